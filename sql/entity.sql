-- The entity catalog: built-in entities and tables registered as entities.
CREATE EXTENSION ccrm;
-- err(sql): run a statement and show how it failed (SQLSTATE, message, hint).
CREATE FUNCTION pg_temp.err(sql text, OUT state text, OUT message text, OUT hint text)
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
    state := 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT, hint = PG_EXCEPTION_HINT;
END $$;

SELECT name, relid, key_column, contact_column, account_column, owner_column, created_column, builtin
  FROM ccrm.entity ORDER BY name;

CREATE TABLE public.invoice (
    id          integer PRIMARY KEY,
    contact_id  bigint,
    account_id  integer,
    seller_id   smallint,
    total       numeric NOT NULL DEFAULT 0,
    note        text,
    issued_at   timestamptz NOT NULL DEFAULT now(),
    issued_on   date
);
SELECT ccrm.register_entity('invoice', 'public.invoice', 'id', 'contact_id', 'account_id', 'seller_id', 'issued_at');
SELECT name, relid, key_column, contact_column, account_column, owner_column, created_column, builtin
  FROM ccrm.entity WHERE name = 'invoice';

-- defaults: key id, no links
CREATE TABLE public.offer (id bigint PRIMARY KEY, title text);
SELECT ccrm.register_entity('offer', 'public.offer');
SELECT key_column, contact_column IS NULL AS no_contact FROM ccrm.entity WHERE name = 'offer';

-- bad names
SELECT * FROM pg_temp.err('SELECT ccrm.register_entity(''Invoice2'', ''public.invoice'')');
SELECT * FROM pg_temp.err('SELECT ccrm.register_entity(''2nd'', ''public.invoice'')');
SELECT * FROM pg_temp.err('SELECT ccrm.register_entity(''in voice'', ''public.invoice'')');
-- taken names and tables
SELECT * FROM pg_temp.err('SELECT ccrm.register_entity(''contact'', ''public.invoice'')');
SELECT * FROM pg_temp.err('SELECT ccrm.register_entity(''invoice_again'', ''public.invoice'')');
SELECT * FROM pg_temp.err('SELECT ccrm.register_entity(''own'', ''ccrm.contact'')');
-- not a table
CREATE VIEW public.invoice_view AS SELECT * FROM public.invoice;
SELECT * FROM pg_temp.err('SELECT ccrm.register_entity(''iview'', ''public.invoice_view'')');
CREATE SEQUENCE public.seq;
SELECT * FROM pg_temp.err('SELECT ccrm.register_entity(''seq'', ''public.seq'')');
-- columns
CREATE TABLE public.thing (id integer PRIMARY KEY, code text UNIQUE, n integer, u integer, ts text);
CREATE UNIQUE INDEX thing_u_partial ON public.thing (u) WHERE u > 0;
SELECT * FROM pg_temp.err('SELECT ccrm.register_entity(''thing'', ''public.thing'', ''nosuch'')');
SELECT * FROM pg_temp.err('SELECT ccrm.register_entity(''thing'', ''public.thing'', ''code'')');
SELECT * FROM pg_temp.err('SELECT ccrm.register_entity(''thing'', ''public.thing'', ''n'')');
SELECT * FROM pg_temp.err('SELECT ccrm.register_entity(''thing'', ''public.thing'', ''u'')');
SELECT * FROM pg_temp.err('SELECT ccrm.register_entity(''thing'', ''public.thing'', ''ctid'')');
SELECT * FROM pg_temp.err('SELECT ccrm.register_entity(''thing'', ''public.thing'', ''id'', contact_column => ''code'')');
SELECT * FROM pg_temp.err('SELECT ccrm.register_entity(''thing'', ''public.thing'', ''id'', account_column => ''nosuch'')');
SELECT * FROM pg_temp.err('SELECT ccrm.register_entity(''thing'', ''public.thing'', ''id'', created_column => ''ts'')');
SELECT * FROM pg_temp.err('SELECT ccrm.register_entity(''thing'', ''public.thing'', ''id'', created_column => ''n'')');
SELECT * FROM pg_temp.err('SELECT ccrm.register_entity(NULL, ''public.thing'')');
-- none of those registered anything
SELECT name FROM ccrm.entity WHERE NOT builtin ORDER BY name;

-- only the table's owner may register it
CREATE ROLE ccrm_entity_stranger;
GRANT USAGE ON SCHEMA ccrm TO ccrm_entity_stranger;
GRANT SELECT, INSERT, UPDATE, DELETE ON ccrm.entity TO ccrm_entity_stranger;
GRANT SELECT ON ccrm.custom_field, ccrm.target_group TO ccrm_entity_stranger;
SET ROLE ccrm_entity_stranger;
SELECT * FROM pg_temp.err($$SELECT ccrm.register_entity('thing', 'public.thing')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.unregister_entity('invoice')$$);
RESET ROLE;

-- unregister
SELECT * FROM pg_temp.err($$SELECT ccrm.unregister_entity('contact')$$);
SELECT * FROM pg_temp.err($$SELECT ccrm.unregister_entity('nosuch')$$);
SELECT ccrm.create_target_group('Big invoices', 'invoice', '{"field": "total", "op": "gt", "value": 1000}');
SELECT * FROM pg_temp.err($$SELECT ccrm.unregister_entity('invoice')$$);
SELECT ccrm.drop_target_group('Big invoices');
SELECT ccrm.unregister_entity('invoice');
-- a registered table dropped later: lookups say so, unregistering still works
DROP TABLE public.offer;
SELECT * FROM pg_temp.err($$SELECT ccrm.filter_count('offer', '{"field": "id", "op": "gt", "value": 0}')$$);
SELECT ccrm.unregister_entity('offer');
SELECT name FROM ccrm.entity WHERE NOT builtin;

DROP EXTENSION ccrm CASCADE;
DROP OWNED BY ccrm_entity_stranger;
DROP ROLE ccrm_entity_stranger;
DROP TABLE public.invoice, public.thing CASCADE;
DROP SEQUENCE public.seq;
