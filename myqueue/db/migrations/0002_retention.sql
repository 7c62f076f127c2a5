-- 0002: log-append times, retention and topic deletion (issue #13 items 3-6).
--
-- Every batch gets its log-append time in ms (mq_batches.append_time_ms, stamped by the broker,
-- kept monotonic per partition here: GREATEST with the partition's last one) and an index on
-- (partition_id, append_time_ms) so a seek by time is an index lookup, not a scan. The partition
-- row keeps its log start, its last append time and its stored bytes, so retention and the
-- metrics read one row instead of aggregating the batches. Batches stored before this migration
-- read as appended when it ran (a constant default: no table rewrite). Written with IF NOT EXISTS
-- and CREATE OR REPLACE although it runs once: a database rebuilt by 0001 over these objects (the
-- tests' "older schema" starts) takes it again unchanged.

DO $do$
BEGIN
    EXECUTE format('ALTER TABLE mq_batches ADD COLUMN IF NOT EXISTS append_time_ms bigint NOT NULL DEFAULT %s',
                   (extract(epoch FROM clock_timestamp()) * 1000)::bigint);
END
$do$;
ALTER TABLE mq_batches ALTER COLUMN append_time_ms DROP DEFAULT;
CREATE INDEX IF NOT EXISTS mq_batches_time ON mq_batches (partition_id, append_time_ms);

ALTER TABLE mq_partitions ADD COLUMN IF NOT EXISTS log_start bigint NOT NULL DEFAULT 0;
ALTER TABLE mq_partitions ADD COLUMN IF NOT EXISTS last_append_ms bigint NOT NULL DEFAULT 0;
ALTER TABLE mq_partitions ADD COLUMN IF NOT EXISTS stored_bytes bigint NOT NULL DEFAULT 0;
UPDATE mq_partitions p SET
    stored_bytes = s.bytes,
    last_append_ms = s.last_ms
FROM (SELECT partition_id, sum(octet_length(body)) AS bytes, max(append_time_ms) AS last_ms
      FROM mq_batches GROUP BY partition_id) s
WHERE s.partition_id = p.id;

-- Retention deletes batch rows steadily: vacuum this table (and its TOAST table, where large
-- bodies live) after 2 % of it is dead instead of PostgreSQL's default 20 %, and without the
-- cost delay, so freed pages are reused before the table grows (docs/performance.md, the soak).
ALTER TABLE mq_batches SET (
    autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_cost_delay = 0, autovacuum_vacuum_insert_scale_factor = 0.05,
    toast.autovacuum_vacuum_scale_factor = 0.02, toast.autovacuum_vacuum_threshold = 1000,
    toast.autovacuum_vacuum_cost_delay = 0
);

-- The append with its log-append time: the one place offsets are assigned, as in 0001.
CREATE OR REPLACE FUNCTION mq_append(p_id bigint, p_count integer, p_body bytea, p_time bigint)
RETURNS bigint LANGUAGE plpgsql AS $fn$
DECLARE
    b bigint;
    t bigint;
BEGIN
    UPDATE mq_partitions SET next_offset = next_offset + p_count,
                             last_append_ms = GREATEST(last_append_ms, p_time),
                             stored_bytes = stored_bytes + octet_length(p_body)
        WHERE id = p_id
        RETURNING next_offset - p_count, last_append_ms INTO b, t;
    IF FOUND THEN
        INSERT INTO mq_batches (partition_id, base_offset, record_count, body, append_time_ms)
            VALUES (p_id, b, p_count, p_body, t);
    END IF;
    RETURN b;
END
$fn$;
-- 0001's three-argument append (a broker of the previous release during an upgrade) stamps now.
CREATE OR REPLACE FUNCTION mq_append(p_id bigint, p_count integer, p_body bytea)
RETURNS bigint LANGUAGE sql AS $fn$
    SELECT mq_append(p_id, p_count, p_body, (extract(epoch FROM clock_timestamp()) * 1000)::bigint)
$fn$;

CREATE OR REPLACE FUNCTION mq_append_sequenced(
    p_id bigint, p_producer text, p_sequence bigint, p_count integer, p_body bytea, p_time bigint
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
    b := mq_append(p_id, p_count, p_body, p_time);
    INSERT INTO mq_producers VALUES (p_id, p_producer, p_sequence + p_count, p_sequence, p_count, b)
        ON CONFLICT (partition_id, producer_id) DO UPDATE SET
            next_sequence = EXCLUDED.next_sequence, last_sequence = EXCLUDED.last_sequence,
            last_count = EXCLUDED.last_count, last_base = EXCLUDED.last_base;
    base := b;
    duplicate := false;
    RETURN NEXT;
END
$fn$;

CREATE OR REPLACE FUNCTION mq_append_request(p_id bigint, p_request text, p_count integer, p_body bytea, p_time bigint)
RETURNS TABLE (base bigint, duplicate boolean) LANGUAGE plpgsql AS $fn$
DECLARE
    b bigint;
BEGIN
    PERFORM 1 FROM mq_partitions WHERE id = p_id FOR UPDATE;
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
    b := mq_append(p_id, p_count, p_body, p_time);
    INSERT INTO mq_requests (partition_id, request_id, base) VALUES (p_id, p_request, b);
    IF random() < 0.01 THEN
        DELETE FROM mq_requests WHERE partition_id = p_id AND created < now() - interval '1 hour';
    END IF;
    base := b;
    duplicate := false;
    RETURN NEXT;
END
$fn$;

-- The COPY append gains the time as its last column (a view may only grow at the end).
CREATE OR REPLACE VIEW mq_append_input AS
    SELECT NULL::bigint AS partition_id, NULL::text AS producer_id, NULL::bigint AS sequence,
           NULL::integer AS record_count, NULL::bytea AS body, NULL::bigint AS append_time_ms
    WHERE false;
CREATE OR REPLACE FUNCTION mq_append_input_row() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    b bigint;
    dup boolean := false;
    t bigint := COALESCE(NEW.append_time_ms, (extract(epoch FROM clock_timestamp()) * 1000)::bigint);
BEGIN
    IF NEW.producer_id IS NULL THEN
        b := mq_append(NEW.partition_id, NEW.record_count, NEW.body, t);
    ELSE
        SELECT base, duplicate INTO b, dup
            FROM mq_append_sequenced(NEW.partition_id, NEW.producer_id, NEW.sequence, NEW.record_count, NEW.body, t);
    END IF;
    RAISE INFO 'mq_append_result %',
        COALESCE(b::text || CASE WHEN dup THEN ' duplicate' ELSE ' stored' END, 'not_hosted');
    RETURN NULL;
END
$fn$;

-- Retention: drop head batches past a limit (NULL: unlimited), at most p_max per call, and move
-- the log start. A head batch is past retention.ms when appended before p_now - p_ms, past
-- retention.bytes when the batches after it hold at least p_bytes, past retention.messages when
-- at least p_messages records follow it (as MemoryStorage's drop_head). Reads only the rows it
-- drops plus one (the primary key, in order); appends proceed meanwhile (they only add at the
-- tail, and the sizes and end read first only grow: the decision errs on keeping). Returns the
-- records dropped; NULL when the partition row is missing.
CREATE OR REPLACE FUNCTION mq_retain(p_id bigint, p_now bigint, p_ms bigint, p_bytes bigint, p_messages bigint, p_max integer)
RETURNS bigint LANGUAGE plpgsql AS $fn$
DECLARE
    s bigint;
    e bigint;
    remaining bigint;
    new_start bigint;
    dropped_bytes bigint := 0;
    n integer := 0;
    r record;
BEGIN
    SELECT log_start, next_offset, stored_bytes INTO s, e, remaining FROM mq_partitions WHERE id = p_id;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    new_start := s;
    FOR r IN SELECT b.base_offset, b.record_count, octet_length(b.body) AS len, b.append_time_ms
             FROM mq_batches b WHERE b.partition_id = p_id AND b.base_offset >= s
             ORDER BY b.base_offset LIMIT p_max LOOP
        EXIT WHEN NOT (
            (p_ms IS NOT NULL AND r.append_time_ms < p_now - p_ms)
            OR (p_bytes IS NOT NULL AND remaining - r.len >= p_bytes)
            OR (p_messages IS NOT NULL AND e - (r.base_offset + r.record_count) >= p_messages));
        remaining := remaining - r.len;
        dropped_bytes := dropped_bytes + r.len;
        new_start := r.base_offset + r.record_count;
        n := n + 1;
    END LOOP;
    IF n = 0 THEN
        RETURN 0;
    END IF;
    DELETE FROM mq_batches WHERE partition_id = p_id AND base_offset >= s AND base_offset < new_start;
    UPDATE mq_partitions SET log_start = GREATEST(log_start, new_start),
                             stored_bytes = stored_bytes - dropped_bytes
        WHERE id = p_id;
    RETURN new_start - s;
END
$fn$;

-- The seed's take: a stored position below the log start reads from the log start instead.
CREATE OR REPLACE FUNCTION mq_take_named(p_grp text, p_id bigint, p_n bigint, p_take text)
RETURNS TABLE (t_start bigint, t_end bigint, t_base bigint, t_body bytea) LANGUAGE plpgsql AS $fn$
DECLARE
    e bigint;
    ls0 bigint;
    s bigint;
    stop bigint;
    lt text;
    ls bigint;
BEGIN
    SELECT p.next_offset, p.log_start INTO e, ls0 FROM mq_partitions p WHERE p.id = p_id;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    SELECT g.next_offset, g.last_take, g.last_start INTO s, lt, ls FROM mq_positions g
        WHERE g.grp = p_grp AND g.partition_id = p_id FOR UPDATE;
    s := COALESCE(s, 0);
    IF p_take IS NOT NULL AND lt = p_take AND ls >= ls0 THEN
        stop := s;
        s := ls;
    ELSE
        s := GREATEST(s, ls0);
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
    RETURN QUERY SELECT s, e, b.base_offset, b.body FROM mq_batches b
        WHERE b.partition_id = p_id AND b.base_offset < stop
          AND b.base_offset >= (SELECT COALESCE(max(f.base_offset), 0) FROM mq_batches f
                                WHERE f.partition_id = p_id AND f.base_offset <= s)
        ORDER BY b.base_offset;
END
$fn$;
