"""tfner_client's own protobuf DescriptorPool.

Every generated module under `tfner_client._proto` registers its .proto file
here (generate_stubs.sh rewrites `_descriptor_pool.Default()` to this pool).
Protobuf's default pool is where `tensorflow` and `tensorflow-serving-api`
register the same file names; keeping ours apart means a process may import
both, of any versions, without "duplicate file name" errors.
"""

from google.protobuf import descriptor_pool

POOL = descriptor_pool.DescriptorPool()
