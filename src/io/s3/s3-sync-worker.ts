// The synckit worker behind s3Sync: runs the async S3 calls of s3.ts while the calling thread
// blocks. Replies are plain data (errors included), so nothing depends on how Errors clone.
import { runAsWorker } from 'synckit';
import type { S3Settings } from './client.ts';
import { runSyncOp, type SyncOp } from './sync.ts';

// The SDK's Node-version notice would be replayed on the caller's stderr by synckit: the caller's
// own client (if it ever makes one) already says it once.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';

runAsWorker((req: SyncOp, settings: S3Settings) => runSyncOp(req, settings));
