-- select.student, the decision: one row per seed of student_plan (this run's student requests, from
-- factory/student.py; never part of `plan`) in student_pass (answered, passed, pass_rate, decision), a seed
-- is `in_band` when the student's pass rate lies in [lo, hi], bounds included. Run on its own after the plan
-- and before the teachers (select.student.before_generation: their requests of too_easy / too_hard seeds are
-- never sent), and by filters/student.sql in the filter stage: both read the same verdicts, so both decide alike.
-- pass_rate = passed / answered samples, with the verdicts of every verifier that ran (math, code,
-- reasoning-gym, the judge); a verifier timeout is no verdict and is not counted. A seed with no answered
-- sample, or that nothing can verify (no reference, no tests, no verdict), is `undecided`.
CREATE OR REPLACE TEMP TABLE student_pass AS
WITH samples AS (
  SELECT sp.seed_id, sp.request_id,
         -- as traces.sql: the judge decides only what the verifier failed for want of reading it
         CASE WHEN v.passed = FALSE AND j.passed IS NOT NULL THEN j.passed ELSE v.passed END AS passed,
         v.request_id IS NOT NULL AS has_verdict
  FROM student_plan sp
  JOIN responses s ON s.request_id = sp.request_id AND s.error IS NULL
  LEFT JOIN checks v ON v.request_id = sp.request_id AND v."check" = 'verify'
  LEFT JOIN checks j ON j.request_id = sp.request_id AND j."check" = 'judge'
  WHERE coalesce(v.reason, '') NOT IN ('verify_timeout', 'gym_timeout')
), per_seed AS (
  SELECT d.seed_id,
         count(m.request_id) AS answered,
         count(m.request_id) FILTER (coalesce(m.passed, FALSE)) AS passed,
         -- a reference, tests, a reasoning-gym scorer (checks/gym.py), or any verdict some verifier gave
         any_value((d.domain = 'math' AND d.answer IS NOT NULL) OR (d.domain = 'code' AND d.tests IS NOT NULL)
                   OR json_extract(d.meta, '$.gym') IS NOT NULL) OR bool_or(coalesce(m.has_verdict, FALSE)) AS verifiable
  FROM (SELECT DISTINCT seed_id FROM student_plan) p
  JOIN seeds d USING (seed_id)
  LEFT JOIN samples m USING (seed_id)
  GROUP BY d.seed_id
)
SELECT seed_id, answered, passed,
       CASE WHEN answered > 0 THEN passed / answered END AS pass_rate,
       CASE WHEN answered = 0 OR NOT verifiable THEN 'undecided'
            -- float rounding never moves a rate that sits on a bound out of the band
            WHEN passed / answered < {{ lo }} - 1e-9 THEN 'too_hard'
            WHEN passed / answered > {{ hi }} + 1e-9 THEN 'too_easy'
            ELSE 'in_band' END AS decision
FROM per_seed;
