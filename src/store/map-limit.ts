/** Re-export for src/peer/chain.ts, which another branch is rewriting; remove once it imports ../util/map-limit.js. */
export {mapLimit} from '../util/map-limit.js'
