-- Example reporting queries. Each runs unchanged on SQLite and PostgreSQL: the test suite
-- executes every one of them on both databases and checks that the README shows them verbatim.

-- name: images per status per day
-- (on PostgreSQL the day follows the session's TimeZone; SET TIME ZONE 'UTC' for UTC days)
SELECT CAST(date(date_added_at) AS TEXT) AS day, status, count(*) AS images
FROM images
WHERE deleted_at IS NULL
GROUP BY date(date_added_at), status
ORDER BY day, status;

-- name: restaged images with their parents
SELECT child.image_id, child.image_name, CAST(child.restage AS TEXT) AS restage,
       parent.image_id AS parent_id, parent.image_name AS parent_name
FROM images AS child
LEFT JOIN images AS parent ON parent.image_id = child.parent_image_id
WHERE child.parent_image_id IS NOT NULL
ORDER BY child.image_id;

-- name: images whose extra holds a given key
SELECT image_id, CAST(extra ->> 'render_revision' AS BIGINT) AS render_revision
FROM images
WHERE extra ->> 'render_revision' IS NOT NULL
ORDER BY image_id;

-- name: failures of the last run
SELECT f.image_id, f.kind, f.http_status, f.message
FROM sync_failures AS f
WHERE f.run_id = (SELECT max(id) FROM sync_runs)
ORDER BY f.image_id;

-- name: images deleted upstream
SELECT image_id, image_name, deleted_at
FROM images
WHERE deleted_at IS NOT NULL
ORDER BY deleted_at DESC;

-- name: the last runs
SELECT id, started_at, status, requested, inserted, updated, unchanged, deleted, not_found, failed,
       orders_requested, orders_failed, api_requests
FROM sync_runs
ORDER BY id DESC
LIMIT 10;

-- name: images per order
SELECT o.order_id, o.name, o.status, o.total_images,
       count(i.image_id) AS images,
       count(CASE WHEN i.status = 'processed' THEN 1 END) AS processed
FROM orders AS o
LEFT JOIN images AS i ON i.order_id = o.order_id AND i.deleted_at IS NULL
WHERE o.deleted_at IS NULL
GROUP BY o.order_id, o.name, o.status, o.total_images
ORDER BY o.order_id;

-- name: orders still processing
-- (the order says so, or one of its images is not processed, error or expired yet)
SELECT o.order_id, o.name, o.status, count(i.image_id) AS unfinished_images
FROM orders AS o
LEFT JOIN images AS i ON i.order_id = o.order_id AND i.deleted_at IS NULL
     AND (i.status IS NULL OR i.status NOT IN ('processed', 'error', 'expired'))
WHERE o.deleted_at IS NULL
GROUP BY o.order_id, o.name, o.status
HAVING o.status = 'processing' OR count(i.image_id) > 0
ORDER BY o.order_id;
