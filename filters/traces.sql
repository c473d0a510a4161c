-- The candidate traces: successful answers to the requests of the last build's plan, with
-- what the Python checks found (parsed, verify). Everything after this reads `traces`.
CREATE OR REPLACE TEMP TABLE traces AS
SELECT q.request_id, q.seed_id, q.prompt_id, q.teacher, q.model, q.template, q.messages,
       d.source, d.domain, d.problem, d.answer AS reference,
       s.text, s.finish_reason, s.completion_tokens, s.logprobs IS NOT NULL AS has_logprobs,
       p.reasoning, p.answer, p.answer_source, p.think_closed, p.truncated,
       p.reasoning_words, p.repetition, p.error AS parse_error,
       v.passed AS verified, v.reason AS verify_reason
FROM plan
JOIN requests q USING (request_id)
JOIN responses s USING (request_id)
JOIN seeds d USING (seed_id)
LEFT JOIN parsed p USING (request_id)
LEFT JOIN checks v ON v.request_id = q.request_id AND v."check" = 'verify'
WHERE s.error IS NULL;

CREATE OR REPLACE TEMP TABLE rejects (request_id VARCHAR PRIMARY KEY, stage VARCHAR, reason VARCHAR);
