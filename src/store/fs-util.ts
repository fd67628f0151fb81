/** Re-export for src/peer/chain.ts, which another branch is rewriting; remove once it imports ../util/fs-util.js. */
export {tmpName} from '../util/fs-util.js'
