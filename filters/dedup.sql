-- dedup: exact (normalised text) and near-duplicate (MinHash clusters, computed in Python into
-- seed_near / trace_near), over problems and over traces. The survivor of a group is
-- deterministic: verified first, then the smallest id.
INSERT INTO rejects
WITH alive AS (
  SELECT * FROM traces WHERE request_id NOT IN (SELECT request_id FROM rejects)
), seed_norm AS (
  SELECT seed_id, row_number() OVER (
           PARTITION BY md5(lower(regexp_replace(trim(problem), '\s+', ' ', 'g'))) ORDER BY seed_id) AS rn
  FROM (SELECT DISTINCT seed_id, problem FROM alive)
), trace_norm AS (
  SELECT request_id, row_number() OVER (
           -- the reasoning too: a reasoning field leaves only the final answer in `text`
           PARTITION BY md5(lower(regexp_replace(trim(coalesce(reasoning, '') || ' ' || text), '\s+', ' ', 'g')))
           ORDER BY coalesce(verified, FALSE) DESC, request_id) AS rn
  FROM alive
), decided AS (
  SELECT a.request_id, 'dedup' AS stage,
         CASE WHEN sn.rn > 1 THEN 'duplicate_problem'
              WHEN sp.rep IS NOT NULL AND sp.rep <> a.seed_id THEN 'near_duplicate_problem'
              WHEN tn.rn > 1 THEN 'duplicate_trace'
              WHEN tp.rep IS NOT NULL AND tp.rep <> a.request_id THEN 'near_duplicate_trace'
         END AS reason
  FROM alive a
  JOIN seed_norm sn USING (seed_id)
  JOIN trace_norm tn USING (request_id)
  LEFT JOIN seed_near sp ON sp.id = a.seed_id
  LEFT JOIN trace_near tp ON tp.id = a.request_id
)
SELECT request_id, stage, reason FROM decided WHERE reason IS NOT NULL;
