-- Reporting queries for the mirror. Each runs on SQLite and PostgreSQL, and the test suite
-- runs every one on both databases with known answers.
--
-- First, the named reports of `autoenhance-mirror report NAME`, verbatim from the package
-- (mirror/reports.sql; a test keeps the two the same). :since and :before bound a report's
-- dates: `report --since D1 --until D2` binds :since = 'D1' and :before = the day after D2,
-- and without them '0001-01-01' and '9999-12-31'. To run one yourself, set them first:
--   sqlite3:  .parameter set :since '2026-11-01'
--             .parameter set :before '2026-12-01'
--   psql:     \set since '''2026-11-01'''
--             \set before '''2026-12-01'''
--             (psql pastes :since in as written: the quotes make it a literal)
--             SET TIME ZONE 'UTC';  (so that days are UTC days)
-- Where the two databases share no function (seconds between two timestamps), a report has
-- one statement for each, after `-- on: sqlite` and `-- on: postgresql`. Reports whose
-- `about` line starts with (history) read image_versions.

-- report: status-per-day
-- about: Images added per day, by their current status (dates filter the day added).
SELECT CAST(date(date_added_at) AS TEXT) AS day, status, count(*) AS images
FROM images
WHERE deleted_at IS NULL AND date_added_at >= :since AND date_added_at < :before
GROUP BY date(date_added_at), status
ORDER BY day, CASE WHEN status IS NULL THEN 1 ELSE 0 END, status;

-- report: time-to-process
-- about: (history) Seconds from date added to first seen processed, per day seen: count, median, 90th percentile, max; how many were processed when first seen.
-- The percentiles interpolate linearly between neighbours, as PostgreSQL's percentile_cont
-- does, in plain SQL so both databases give the same numbers. Whole seconds. An image the
-- mirror first saw already processed counts as processed when first seen, so its time is
-- an upper bound: first_seen_processed says how many of the day's images are such.
-- on: sqlite
WITH versions AS (
  SELECT image_id, valid_from, date_added_at, status,
         row_number() OVER (PARTITION BY image_id ORDER BY valid_from) AS version
  FROM image_versions
), first_processed AS (
  SELECT valid_from, date_added_at, version,
         row_number() OVER (PARTITION BY image_id ORDER BY valid_from) AS nth
  FROM versions
  WHERE status = 'processed'
), durations AS (
  SELECT CAST(date(valid_from) AS TEXT) AS day,
         CASE WHEN version = 1 THEN 1 ELSE 0 END AS seen_processed_first,
         CAST(strftime('%s', valid_from) AS BIGINT)
           - CAST(strftime('%s', date_added_at) AS BIGINT) AS seconds
  FROM first_processed
  WHERE nth = 1 AND date_added_at IS NOT NULL
    AND valid_from >= :since AND valid_from < :before
), ranked AS (
  SELECT day, seconds, seen_processed_first,
         row_number() OVER (PARTITION BY day ORDER BY seconds) AS position,
         count(*) OVER (PARTITION BY day) AS images
  FROM durations
)
SELECT day, images,
       CAST(sum(CASE position - (images - 1) / 2
                  WHEN 1 THEN seconds * (2 - (images - 1) % 2)
                  WHEN 2 THEN seconds * ((images - 1) % 2)
                  ELSE 0 END) AS DOUBLE PRECISION) / 2 AS median_seconds,
       CAST(sum(CASE position - (images - 1) * 9 / 10
                  WHEN 1 THEN seconds * (10 - (images - 1) * 9 % 10)
                  WHEN 2 THEN seconds * ((images - 1) * 9 % 10)
                  ELSE 0 END) AS DOUBLE PRECISION) / 10 AS p90_seconds,
       max(seconds) AS max_seconds,
       sum(seen_processed_first) AS first_seen_processed
FROM ranked
GROUP BY day, images
ORDER BY day;
-- on: postgresql
WITH versions AS (
  SELECT image_id, valid_from, date_added_at, status,
         row_number() OVER (PARTITION BY image_id ORDER BY valid_from) AS version
  FROM image_versions
), first_processed AS (
  SELECT valid_from, date_added_at, version,
         row_number() OVER (PARTITION BY image_id ORDER BY valid_from) AS nth
  FROM versions
  WHERE status = 'processed'
), durations AS (
  SELECT CAST(date(valid_from) AS TEXT) AS day,
         CASE WHEN version = 1 THEN 1 ELSE 0 END AS seen_processed_first,
         CAST(floor(EXTRACT(EPOCH FROM valid_from)) AS BIGINT)
           - CAST(floor(EXTRACT(EPOCH FROM date_added_at)) AS BIGINT) AS seconds
  FROM first_processed
  WHERE nth = 1 AND date_added_at IS NOT NULL
    AND valid_from >= :since AND valid_from < :before
), ranked AS (
  SELECT day, seconds, seen_processed_first,
         row_number() OVER (PARTITION BY day ORDER BY seconds) AS position,
         count(*) OVER (PARTITION BY day) AS images
  FROM durations
)
SELECT day, images,
       CAST(sum(CASE position - (images - 1) / 2
                  WHEN 1 THEN seconds * (2 - (images - 1) % 2)
                  WHEN 2 THEN seconds * ((images - 1) % 2)
                  ELSE 0 END) AS DOUBLE PRECISION) / 2 AS median_seconds,
       CAST(sum(CASE position - (images - 1) * 9 / 10
                  WHEN 1 THEN seconds * (10 - (images - 1) * 9 % 10)
                  WHEN 2 THEN seconds * ((images - 1) * 9 % 10)
                  ELSE 0 END) AS DOUBLE PRECISION) / 10 AS p90_seconds,
       max(seconds) AS max_seconds,
       sum(seen_processed_first) AS first_seen_processed
FROM ranked
GROUP BY day, images
ORDER BY day;

-- report: errors-per-day
-- about: (history) Images that went into error per day, by status_reason.
-- An image counts again when it returns to error, or its reason changes while in error.
WITH steps AS (
  SELECT valid_from, status, status_reason,
         lag(status) OVER (PARTITION BY image_id ORDER BY valid_from) AS previous_status,
         lag(status_reason) OVER (PARTITION BY image_id ORDER BY valid_from) AS previous_reason
  FROM image_versions
)
SELECT CAST(date(valid_from) AS TEXT) AS day, status_reason, count(*) AS images
FROM steps
WHERE status = 'error'
  AND (previous_status IS NULL OR previous_status <> 'error'
       OR coalesce(previous_reason, '') <> coalesce(status_reason, ''))
  AND valid_from >= :since AND valid_from < :before
GROUP BY date(valid_from), status_reason
ORDER BY day, images DESC, CASE WHEN status_reason IS NULL THEN 1 ELSE 0 END, status_reason;

-- report: downloads-per-day
-- about: (history) Images first seen downloaded (and so paid for), per day.
WITH first_downloaded AS (
  SELECT image_id, min(valid_from) AS downloaded_at
  FROM image_versions
  WHERE downloaded
  GROUP BY image_id
)
SELECT CAST(date(downloaded_at) AS TEXT) AS day, count(*) AS images
FROM first_downloaded
WHERE downloaded_at >= :since AND downloaded_at < :before
GROUP BY date(downloaded_at)
ORDER BY day;

-- report: restaged
-- about: Restaged images with their parents (dates filter the child's day added).
SELECT child.image_id, child.image_name, child.status, child.date_added_at,
       child.parent_image_id, parent.image_name AS parent_name, parent.status AS parent_status
FROM images AS child
LEFT JOIN images AS parent ON parent.image_id = child.parent_image_id
WHERE child.parent_image_id IS NOT NULL AND child.deleted_at IS NULL
  AND child.date_added_at >= :since AND child.date_added_at < :before
ORDER BY child.date_added_at, child.image_id;

-- report: deleted
-- about: Images deleted upstream, newest first (dates filter the day found deleted).
SELECT image_id, image_name, order_id, status, deleted_at
FROM images
WHERE deleted_at >= :since AND deleted_at < :before
ORDER BY deleted_at DESC, image_id;

-- report: images-per-order
-- about: Mirrored orders with their images, and how many are processed (dates filter the day the order was created).
-- An order without created_at is listed whatever the dates (its day is unknown).
SELECT o.order_id, o.name, o.status, o.created_at, o.total_images,
       count(i.image_id) AS images,
       count(CASE WHEN i.status = 'processed' THEN 1 END) AS processed
FROM orders AS o
LEFT JOIN images AS i ON i.order_id = o.order_id AND i.deleted_at IS NULL
WHERE o.deleted_at IS NULL
  AND COALESCE(o.created_at, :since) >= :since AND COALESCE(o.created_at, :since) < :before
GROUP BY o.order_id, o.name, o.status, o.created_at, o.total_images
ORDER BY o.order_id;

-- report: orders-processing
-- about: Orders not finished: the order says processing, or one of its images is not processed, error or expired yet (dates filter the day created).
-- An order without created_at is listed whatever the dates (its day is unknown).
SELECT o.order_id, o.name, o.status, o.created_at, count(i.image_id) AS unfinished_images
FROM orders AS o
LEFT JOIN images AS i ON i.order_id = o.order_id AND i.deleted_at IS NULL
     AND (i.status IS NULL OR i.status NOT IN ('processed', 'error', 'expired'))
WHERE o.deleted_at IS NULL
  AND COALESCE(o.created_at, :since) >= :since AND COALESCE(o.created_at, :since) < :before
GROUP BY o.order_id, o.name, o.status, o.created_at
HAVING o.status = 'processing' OR count(i.image_id) > 0
ORDER BY o.order_id;

-- report: last-runs
-- about: The 20 newest sync runs with their counts (dates filter the day started).
SELECT id, started_at, finished_at, status, requested, inserted, updated, unchanged, deleted,
       not_found, failed, orders_requested, orders_failed, api_requests, error
FROM sync_runs
WHERE started_at >= :since AND started_at < :before
ORDER BY id DESC
LIMIT 20;

-- report: last-run-failures
-- about: What the newest sync run could not mirror (dates choose the newest run started in them).
SELECT f.run_id, f.image_id, f.order_id, f.kind, f.http_status, f.message
FROM sync_failures AS f
WHERE f.run_id = (SELECT max(id) FROM sync_runs
                  WHERE started_at >= :since AND started_at < :before)
ORDER BY f.id;

-- Other examples.

-- name: status timeline of one image
-- (every version the mirror has seen, oldest first; valid_to is NULL for the current one)
SELECT valid_from, valid_to, status, status_reason, downloaded, run_id
FROM image_versions
WHERE image_id = :image_id
ORDER BY valid_from;

-- name: images in each status at a moment
-- (the versions open at :moment, deleted images excluded: history answers "as of when")
SELECT status, count(*) AS images
FROM image_versions
WHERE valid_from <= :moment AND (valid_to IS NULL OR valid_to > :moment)
GROUP BY status
ORDER BY status;

-- name: images whose extra holds a given key
SELECT image_id, CAST(extra ->> 'render_revision' AS BIGINT) AS render_revision
FROM images
WHERE extra ->> 'render_revision' IS NOT NULL
ORDER BY image_id;

-- name: forget the failures of all but the newest runs
-- (housekeeping: every run adds a row per failure, and nothing else removes them; the runs
-- themselves stay, as each version in image_versions names the run that wrote it)
DELETE FROM sync_failures
WHERE run_id <= (SELECT max(id) FROM sync_runs) - :runs;
