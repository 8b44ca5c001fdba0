-- The MANAGER chains above some users: every (user, manager) link reached by walking up
-- from them, each user having at most one manager.
--
-- Parameters, in order: the tenant and the MANAGER label, the users (the list after
-- user_id IN has a placeholder for each), the tenant and the MANAGER label again.
WITH RECURSIVE chain (user_id, approver_id) AS (
    SELECT user_id, approver_id
    FROM approver_links
    WHERE tenant = ? AND label = ? AND user_id IN ({users})
  UNION
    SELECT l.user_id, l.approver_id
    FROM approver_links l
    JOIN chain c ON l.user_id = c.approver_id
    WHERE l.tenant = ? AND l.label = ?
)
SELECT user_id, approver_id FROM chain
