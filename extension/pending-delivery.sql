/*
 * Delivery (issue 12), version 0.6.0: statements as they go into
 * extension/ccrm--0.5.0--0.6.0.sql and extension/ccrm.sql once the messages
 * branch (ccrm.channel, ccrm.outbox) is merged.  Not installed by itself.
 */

/* ------------------------------------------------------------------------
 * Channel configuration for delivery by ccrm (channel_config.c)
 *
 * ccrm.channel is readable by admins only (its secret column holds
 * passwords and tokens); everyone else reads ccrm.channels, which has no
 * secret.  The trigger checks what can be known when a row is saved.
 * ------------------------------------------------------------------------ */
ALTER TABLE ccrm.channel
    ADD COLUMN endpoint          text,
    ADD COLUMN require_tls       boolean NOT NULL DEFAULT true,
    ADD COLUMN username          text,
    ADD COLUMN secret            text,
    ADD COLUMN sender            text,
    ADD COLUMN ca_file           text,
    ADD COLUMN rate_limit        real CHECK (rate_limit IS NULL OR rate_limit > 0),
    ADD COLUMN parallelism       integer NOT NULL DEFAULT 4 CHECK (parallelism BETWEEN 1 AND 256),
    ADD COLUMN connect_timeout   interval NOT NULL DEFAULT '10 s'
        CHECK (connect_timeout > '0' AND connect_timeout <= '1 hour'),
    ADD COLUMN send_timeout      interval NOT NULL DEFAULT '60 s'
        CHECK (send_timeout > '0' AND send_timeout <= '1 hour'),
    ADD COLUMN sms_format        text CHECK (sms_format IN ('twilio', 'json')),
    ADD COLUMN message_id_domain text;
COMMENT ON COLUMN ccrm.channel.endpoint IS
    'where ccrm delivers: smtp://host[:port] (STARTTLS), smtps://host[:port] (TLS), or an https:// URL for SMS';
COMMENT ON COLUMN ccrm.channel.secret IS 'password (SMTP), auth token (twilio) or bearer token (json); admins only';

CREATE FUNCTION ccrm.channel_delivery_check() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'ccrm_channel_delivery_check';
CREATE TRIGGER ccrm_channel_delivery BEFORE INSERT OR UPDATE ON ccrm.channel
    FOR EACH ROW EXECUTE FUNCTION ccrm.channel_delivery_check();

/* ------------------------------------------------------------------------
 * What the delivery worker keeps per channel (delivery_worker.c)
 * ------------------------------------------------------------------------ */
CREATE TABLE ccrm.channel_delivery (
    channel_id        integer PRIMARY KEY REFERENCES ccrm.channel (id) ON DELETE CASCADE,
    sent              bigint NOT NULL DEFAULT 0,
    failed_permanent  bigint NOT NULL DEFAULT 0,
    failed_temporary  bigint NOT NULL DEFAULT 0,
    failed_timeout    bigint NOT NULL DEFAULT 0,
    failed_connect    bigint NOT NULL DEFAULT 0,
    failed_tls        bigint NOT NULL DEFAULT 0,
    failed_auth       bigint NOT NULL DEFAULT 0,
    failures_in_row   integer NOT NULL DEFAULT 0,
    last_error        text,
    last_error_class  text,
    last_error_at     timestamptz,
    last_sent_at      timestamptz,
    paused_until      timestamptz,
    paused_reason     text,
    since             timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE ccrm.channel_delivery IS
    'counters and pause state of the delivery worker per channel (since: when the counters started)';

CREATE FUNCTION ccrm.resume_channel(channel text) RETURNS boolean
    LANGUAGE c STRICT AS 'MODULE_PATHNAME', 'ccrm_resume_channel';
COMMENT ON FUNCTION ccrm.resume_channel(text) IS
    'ends the pause of a channel the delivery worker paused; true when it was paused';

CREATE FUNCTION ccrm.delivery_stats(at timestamptz DEFAULT pg_catalog.now())
    RETURNS TABLE (channel text, medium text, delivery text, enabled boolean,
                   in_flight bigint, queued bigint, sent_last_minute bigint,
                   sent bigint, failed_permanent bigint, failed_temporary bigint,
                   failed_timeout bigint, failed_connect bigint, failed_tls bigint,
                   failed_auth bigint, failures_in_row integer,
                   last_error text, last_error_class text, last_error_at timestamptz,
                   paused boolean, paused_until timestamptz, paused_reason text)
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
    AS $$
    SELECT c.name, c.medium, c.delivery, c.enabled,
           (SELECT pg_catalog.count(*) FROM ccrm.outbox o
             WHERE o.channel_id OPERATOR(pg_catalog.=) c.id AND o.status OPERATOR(pg_catalog.=) 'claimed'),
           (SELECT pg_catalog.count(*) FROM ccrm.outbox o
             WHERE o.channel_id OPERATOR(pg_catalog.=) c.id AND o.status OPERATOR(pg_catalog.=) 'queued'),
           (SELECT pg_catalog.count(*) FROM ccrm.outbox o
             WHERE o.channel_id OPERATOR(pg_catalog.=) c.id AND o.status OPERATOR(pg_catalog.=) 'sent'
               AND o.sent_at OPERATOR(pg_catalog.>) at OPERATOR(pg_catalog.-) interval '1 minute'
               AND o.sent_at OPERATOR(pg_catalog.<=) at),
           COALESCE(d.sent, 0), COALESCE(d.failed_permanent, 0), COALESCE(d.failed_temporary, 0),
           COALESCE(d.failed_timeout, 0), COALESCE(d.failed_connect, 0), COALESCE(d.failed_tls, 0),
           COALESCE(d.failed_auth, 0), COALESCE(d.failures_in_row, 0),
           d.last_error, d.last_error_class, d.last_error_at,
           COALESCE(d.paused_until OPERATOR(pg_catalog.>) at, false), d.paused_until,
           CASE WHEN c.delivery OPERATOR(pg_catalog.=) 'ccrm' AND c.endpoint IS NULL
                THEN 'not configured: the channel has no endpoint'
                ELSE d.paused_reason END
      FROM ccrm.channel c LEFT JOIN ccrm.channel_delivery d ON d.channel_id OPERATOR(pg_catalog.=) c.id
     ORDER BY c.name
    $$;
COMMENT ON FUNCTION ccrm.delivery_stats(timestamptz) IS
    'per channel: messages in flight and queued, sent in the minute before at, counters by failure class, last error, pause';
CREATE VIEW ccrm.delivery_status AS SELECT * FROM ccrm.delivery_stats();
COMMENT ON VIEW ccrm.delivery_status IS 'ccrm.delivery_stats() now';

REVOKE ALL ON ccrm.channel_delivery FROM PUBLIC;
REVOKE ALL ON FUNCTION ccrm.resume_channel(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION ccrm.delivery_stats(timestamptz) FROM PUBLIC;
REVOKE ALL ON ccrm.delivery_status FROM PUBLIC;
