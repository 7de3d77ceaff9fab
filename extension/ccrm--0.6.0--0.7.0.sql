/*
 * ccrm 0.6.0 -> 0.7.0
 *
 * C: outbox.c (the outbox benchmark of issue 11).
 */
\echo Use "ALTER EXTENSION ccrm UPDATE TO '0.7.0'" to load this file. \quit

/* ========================================================================
 * The outbox's indexes (0.7.0): fewer index entries per message.  A claim
 * and a completion each write a new row version in every index whose key
 * or predicate columns they change.  The purge index now holds only
 * finished rows (a queued or claimed message has no finished_at), and the
 * (channel_id, status) index is gone: queued and claimed messages are
 * counted through outbox_queue_idx, and the other counts scan anyway.
 * ======================================================================== */
DROP INDEX ccrm.outbox_channel_status_idx;
DROP INDEX ccrm.outbox_purge_idx;
CREATE INDEX outbox_purge_idx ON ccrm.outbox (finished_at) WHERE purged_at IS NULL AND finished_at IS NOT NULL;
