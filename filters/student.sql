-- select.student in the filter stage: the per-seed decision of filters/student_pass.sql (the same SQL that
-- decides before generation, select.student.before_generation), then every trace of a seed outside the band is
-- rejected at stage 'student', reason too_easy / too_hard: traces generated before the band was decided (by an
-- earlier build, or with before_generation false). A seed `undecided` (no answered sample, nothing to verify
-- against) keeps its traces: they go on through the funnel.
{% include "student_pass.sql" %}

INSERT INTO rejects
SELECT t.request_id, 'student', p.decision
FROM traces t JOIN student_pass p USING (seed_id)
WHERE p.decision IN ('too_easy', 'too_hard')
  AND t.request_id NOT IN (SELECT request_id FROM rejects);
