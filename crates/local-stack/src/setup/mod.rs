//! The resources the functions expect, created on moto (or wherever the SDK points): the pool
//! queue, the lease table, and the batch path's bucket, queues and tracking table.

pub mod batches;
pub mod leases;
pub mod pool;
mod table;
