#!/usr/bin/env node
if (process.env.VMI_T) console.error("T", (performance.timeOrigin + performance.now() - Number(process.env.VMI_T)).toFixed(0), 'main-start');
process.on('exit', () => { if (process.env.VMI_T) console.error("T", (performance.timeOrigin + performance.now() - Number(process.env.VMI_T)).toFixed(0), 'exit') })
import {execute} from '@oclif/core'

await execute({dir: import.meta.url})
