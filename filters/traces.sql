-- The candidate traces: successful answers to the requests of the last build's plan, with
-- what the Python checks found (parsed, verify, judge). Everything after this reads `traces`.
-- `verified` is TRUE only against a reference (math) or tests (code); a trace that agrees with its
-- seed's majority vote stays unverified (NULL) and carries `pseudo_label` / `vote_share` instead.
CREATE OR REPLACE TEMP TABLE traces AS
SELECT q.request_id, q.seed_id, q.prompt_id, q.teacher, q.model, q.template, q.messages,
       d.source, d.domain, d.problem, d.answer AS reference,
       s.text, s.finish_reason, s.completion_tokens, s.logprobs IS NOT NULL AS has_logprobs,
       p.reasoning, p.answer, p.answer_source, p.think_closed, p.truncated,
       p.reasoning_words, p.repetition, p.error AS parse_error,
       -- the LLM judge (filter.math.judge) decides only what the verifier failed for want of reading it
       CASE WHEN v.passed = FALSE AND j.passed IS NOT NULL THEN j.passed ELSE v.passed END AS verified,
       CASE WHEN v.passed = FALSE AND j.passed IS NOT NULL THEN j.reason ELSE v.reason END AS verify_reason,
       CASE WHEN v.reason = 'majority' THEN json_extract_string(v.detail, '$.label') END AS pseudo_label,
       CASE WHEN v.reason = 'majority' THEN CAST(json_extract(v.detail, '$.share') AS DOUBLE) END AS vote_share
FROM plan
JOIN requests q USING (request_id)
JOIN responses s USING (request_id)
JOIN seeds d USING (seed_id)
LEFT JOIN parsed p USING (request_id)
LEFT JOIN checks v ON v.request_id = q.request_id AND v."check" = 'verify'
LEFT JOIN checks j ON j.request_id = q.request_id AND j."check" = 'judge'
WHERE s.error IS NULL;

CREATE OR REPLACE TEMP TABLE rejects (request_id VARCHAR PRIMARY KEY, stage VARCHAR, reason VARCHAR);
