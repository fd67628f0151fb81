#!/usr/bin/env node
import {execute} from '#oclif'

await execute({dir: import.meta.url})
