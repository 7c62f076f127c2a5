-- Version 1: the schema as myqueue created it before versioned migrations (main at 57d0cdd),
-- statement for statement. Only IF NOT EXISTS / CREATE OR REPLACE / guarded DDL, so applying it
-- to a database made by that code (or an older one) keeps every row and only adds what is
-- missing: that is how such a database is adopted as version 1. Never edit this file; add
-- 0002_<name>.sql instead (myqueue/db/migrate.py).

-- ---- broker: partition logs, producers, positions (myqueue/broker/storage/postgres.py)
CREATE TABLE IF NOT EXISTS mq_partitions (
    id          bigserial PRIMARY KEY,
    topic       text   NOT NULL,
    partition   text   NOT NULL,
    next_offset bigint NOT NULL DEFAULT 0,
    owner       text,
    UNIQUE (topic, partition)
);
CREATE TABLE IF NOT EXISTS mq_batches (
    partition_id bigint  NOT NULL,
    base_offset  bigint  NOT NULL,
    record_count integer NOT NULL,
    body         bytea   NOT NULL,
    PRIMARY KEY (partition_id, base_offset)
);
-- Batches are already compact frames; skip pglz compression on the write path.
ALTER TABLE mq_batches ALTER COLUMN body SET STORAGE EXTERNAL;
-- Idempotent producers: enough per (partition, producer) to recognise a resent batch.
CREATE TABLE IF NOT EXISTS mq_producers (
    partition_id  bigint NOT NULL,
    producer_id   text   NOT NULL,
    next_sequence bigint NOT NULL,
    last_sequence bigint NOT NULL,
    last_count    integer NOT NULL,
    last_base     bigint NOT NULL,
    PRIMARY KEY (partition_id, producer_id)
);
-- The append, the one place offsets are assigned: bump the partition row's next_offset (its row
-- lock is the partition's lock until commit) and store the batch at the old value. NULL when the
-- partition row does not exist.
CREATE OR REPLACE FUNCTION mq_append(p_id bigint, p_count integer, p_body bytea)
RETURNS bigint LANGUAGE plpgsql AS $fn$
DECLARE
    b bigint;
BEGIN
    UPDATE mq_partitions SET next_offset = next_offset + p_count WHERE id = p_id
        RETURNING next_offset - p_count INTO b;
    IF FOUND THEN
        INSERT INTO mq_batches (partition_id, base_offset, record_count, body) VALUES (p_id, b, p_count, p_body);
    END IF;
    RETURN b;
END
$fn$;
-- The idempotent append in one round trip: lock the partition row, check the producer's
-- sequence, append, remember the batch. Mirrors base.check_sequence; raises MQ001 on a conflict.
CREATE OR REPLACE FUNCTION mq_append_sequenced(
    p_id bigint, p_producer text, p_sequence bigint, p_count integer, p_body bytea
) RETURNS TABLE (base bigint, duplicate boolean) LANGUAGE plpgsql AS $fn$
DECLARE
    st mq_producers%ROWTYPE;
    b bigint;
BEGIN
    PERFORM 1 FROM mq_partitions WHERE id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    SELECT * INTO st FROM mq_producers WHERE partition_id = p_id AND producer_id = p_producer;
    IF FOUND AND p_sequence <> st.next_sequence THEN
        IF p_sequence = st.last_sequence AND p_count = st.last_count THEN
            base := st.last_base;
            duplicate := true;
            RETURN NEXT;
            RETURN;
        END IF;
        RAISE EXCEPTION 'expected sequence %, got %', st.next_sequence, p_sequence USING ERRCODE = 'MQ001';
    END IF;
    b := mq_append(p_id, p_count, p_body);
    INSERT INTO mq_producers VALUES (p_id, p_producer, p_sequence + p_count, p_sequence, p_count, b)
        ON CONFLICT (partition_id, producer_id) DO UPDATE SET
            next_sequence = EXCLUDED.next_sequence, last_sequence = EXCLUDED.last_sequence,
            last_count = EXCLUDED.last_count, last_base = EXCLUDED.last_base;
    base := b;
    duplicate := false;
    RETURN NEXT;
END
$fn$;
-- The large-batch append (see the module docstring): COPY one row into this view; the trigger
-- appends it and reports "mq_append_result <base> stored|duplicate" or "... not_hosted".
-- A NULL producer_id is a plain (non-idempotent) append.
CREATE OR REPLACE VIEW mq_append_input AS
    SELECT NULL::bigint AS partition_id, NULL::text AS producer_id, NULL::bigint AS sequence,
           NULL::integer AS record_count, NULL::bytea AS body
    WHERE false;
CREATE OR REPLACE FUNCTION mq_append_input_row() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    b bigint;
    dup boolean := false;
BEGIN
    IF NEW.producer_id IS NULL THEN
        b := mq_append(NEW.partition_id, NEW.record_count, NEW.body);
    ELSE
        SELECT base, duplicate INTO b, dup
            FROM mq_append_sequenced(NEW.partition_id, NEW.producer_id, NEW.sequence, NEW.record_count, NEW.body);
    END IF;
    RAISE INFO 'mq_append_result %',
        COALESCE(b::text || CASE WHEN dup THEN ' duplicate' ELSE ' stored' END, 'not_hosted');
    RETURN NULL;
END
$fn$;
DO $do$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'mq_append_input_row'
                   AND tgrelid = 'mq_append_input'::regclass) THEN
        CREATE TRIGGER mq_append_input_row INSTEAD OF INSERT ON mq_append_input
            FOR EACH ROW EXECUTE FUNCTION mq_append_input_row();
    END IF;
END
$do$;
CREATE TABLE IF NOT EXISTS mq_positions (
    grp          text   NOT NULL,
    partition_id bigint NOT NULL,
    next_offset  bigint NOT NULL,
    PRIMARY KEY (grp, partition_id)
);
-- The last take per (group, partition): a replay of the same take id returns the same records.
ALTER TABLE mq_positions ADD COLUMN IF NOT EXISTS last_take text;
ALTER TABLE mq_positions ADD COLUMN IF NOT EXISTS last_start bigint;
-- Appends that carry a request id (the managers' seed appends): a replay after a lost reply
-- finds its batch here, stored in the same transaction, and answers the original offset.
CREATE TABLE IF NOT EXISTS mq_requests (
    partition_id bigint      NOT NULL,
    request_id   text        NOT NULL,
    base         bigint      NOT NULL,
    created      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (partition_id, request_id)
);
CREATE OR REPLACE FUNCTION mq_append_request(p_id bigint, p_request text, p_count integer, p_body bytea)
RETURNS TABLE (base bigint, duplicate boolean) LANGUAGE plpgsql AS $fn$
DECLARE
    b bigint;
BEGIN
    PERFORM 1 FROM mq_partitions WHERE id = p_id FOR UPDATE;  -- serialises with the original
    IF NOT FOUND THEN
        RETURN;
    END IF;
    SELECT r.base INTO b FROM mq_requests r WHERE r.partition_id = p_id AND r.request_id = p_request;
    IF FOUND THEN
        base := b;
        duplicate := true;
        RETURN NEXT;
        RETURN;
    END IF;
    b := mq_append(p_id, p_count, p_body);
    INSERT INTO mq_requests (partition_id, request_id, base) VALUES (p_id, p_request, b);
    IF random() < 0.01 THEN  -- now and then, forget ids far older than any replay
        DELETE FROM mq_requests WHERE partition_id = p_id AND created < now() - interval '1 hour';
    END IF;
    base := b;
    duplicate := false;
    RETURN NEXT;
END
$fn$;
-- The seed's take in one round trip (plans cached per session): the group's position (0 when
-- never set, locked when stored), the advanced position min(position + n, end) stored, and the
-- batches from the one holding the position up to it. Rows (start, end, base, body); one row
-- with a NULL base when there is nothing to take; none when the partition row is missing.
-- With a take id (p_take), a replay of the group's last take returns its records again.
CREATE OR REPLACE FUNCTION mq_take_named(p_grp text, p_id bigint, p_n bigint, p_take text)
RETURNS TABLE (t_start bigint, t_end bigint, t_base bigint, t_body bytea) LANGUAGE plpgsql AS $fn$
DECLARE
    e bigint;
    s bigint;
    stop bigint;
    lt text;
    ls bigint;
BEGIN
    SELECT p.next_offset INTO e FROM mq_partitions p WHERE p.id = p_id;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    SELECT g.next_offset, g.last_take, g.last_start INTO s, lt, ls FROM mq_positions g
        WHERE g.grp = p_grp AND g.partition_id = p_id FOR UPDATE;
    s := COALESCE(s, 0);
    IF p_take IS NOT NULL AND lt = p_take THEN
        stop := s;  -- the replayed take: its records are [last_start, next_offset)
        s := ls;
    ELSE
        stop := LEAST(e, s + p_n);
        IF stop <= s THEN
            RETURN QUERY SELECT s, e, NULL::bigint, NULL::bytea;
            RETURN;
        END IF;
        INSERT INTO mq_positions AS g (grp, partition_id, next_offset, last_take, last_start)
            VALUES (p_grp, p_id, stop, p_take, s)
            ON CONFLICT (grp, partition_id) DO UPDATE SET next_offset = EXCLUDED.next_offset,
                last_take = EXCLUDED.last_take, last_start = EXCLUDED.last_start;
    END IF;
    -- Rows below e are committed and immutable, so this later snapshot holds all of them.
    RETURN QUERY SELECT s, e, b.base_offset, b.body FROM mq_batches b
        WHERE b.partition_id = p_id AND b.base_offset < stop
          AND b.base_offset >= (SELECT COALESCE(max(f.base_offset), 0) FROM mq_batches f
                                WHERE f.partition_id = p_id AND f.base_offset <= s)
        ORDER BY b.base_offset;
END
$fn$;
-- The take without an id, as before take ids (kept for callers of an older broker).
CREATE OR REPLACE FUNCTION mq_take(p_grp text, p_id bigint, p_n bigint)
RETURNS TABLE (t_start bigint, t_end bigint, t_base bigint, t_body bytea) LANGUAGE sql AS $fn$
    SELECT * FROM mq_take_named(p_grp, p_id, p_n, NULL)
$fn$;

-- ---- managers: event streams and saved views (myqueue/manager/store.py)
CREATE TABLE IF NOT EXISTS mq_meta_events (
    stream text   NOT NULL,
    seq    bigint NOT NULL,
    event  jsonb  NOT NULL,
    PRIMARY KEY (stream, seq)
);
ALTER TABLE mq_meta_events ADD COLUMN IF NOT EXISTS batch_id text;
CREATE INDEX IF NOT EXISTS mq_meta_events_batch ON mq_meta_events (stream, batch_id) WHERE batch_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS mq_meta_views (
    name text PRIMARY KEY,
    view jsonb NOT NULL
);
