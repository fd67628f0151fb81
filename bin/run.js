#!/usr/bin/env node
const __M=(n)=>{ if(process.env.VMI_MARKS) process.stderr.write(`MARK ${n} ${(performance.timeOrigin+performance.now()).toFixed(1)}\n`) }; __M('bin-start')
import {execute} from '#oclif'

await execute({dir: import.meta.url})
