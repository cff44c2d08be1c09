DROP TABLE job_locks;
DROP TABLE outbox;
DROP TABLE alerts;
DROP TABLE quotas;
