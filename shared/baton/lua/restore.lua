-- Restore an algorithm's state from what the database says (reconcile). Only adds:
-- a member the database no longer holds active is released by the caller, one by one,
-- after the database confirms it finished. The in-flight counts are then recomputed
-- from the running set, so they can never drift from it. When the epoch marker is
-- missing (Redis lost its data) it is set here, after the state and the operator's
-- pause are back, so admission resumes.
-- KEYS[1] epoch     (string)
-- KEYS[2] running   (zset: score deadline, member "<task_id>:<attempt>")
-- KEYS[3] attempts  (hash: running member -> "<app>\t<cost>[\t<endpoint url>[\t<admitted at>]]")
-- KEYS[4] counts    (hash: inflight, app:<app>, ep:<url>, ready)
-- KEYS[5] apps      (set: apps with ready tasks)
-- KEYS[6] hold      (string: an operator paused the algorithm)
-- KEYS[7] snapshot mark, set by the caller before it read the database. A flush
--         between that read and this script deletes it with everything else: the read
--         may then miss attempts sent just before the flush, so it must not rebuild
--         the state (the caller reads the database again).
-- KEYS[8..] ready queue of each app named in ARGV (zset: score -priority,
--           member "<created_ms>:<task_id>:<attempt>")
-- ARGV[1] new epoch token
-- ARGV[2] '1' to check the snapshot mark, '0' not to
-- ARGV[3] '1' if the operator paused the algorithm (the database says), else '0'
-- ARGV[4] number A of apps, then ARGV[5..4+A] their names (order of the ready keys)
-- ARGV[5+A] number N of running entries, then N quintuplets:
--           deadline score, running member, app, cost, endpoint url
-- then ready quintuplets: app index (1-based), score, ready member, running member, cost
-- Returns {1 if the epoch was missing else 0, running members added, ready entries added},
-- or {-1, 0, 0} when the snapshot is older than a flush (nothing changed).
local rebuilt = 0
if redis.call('EXISTS', KEYS[1]) == 0 then
  if ARGV[2] == '1' and redis.call('EXISTS', KEYS[7]) == 0 then
    return {-1, 0, 0}
  end
  rebuilt = 1
end
redis.call('DEL', KEYS[7])
-- The operator's pause comes back with the state it was lost with; otherwise the
-- pause and resume commands keep the key themselves (a reconcile that read the
-- database just before one of them must not undo it).
if rebuilt == 1 and ARGV[3] == '1' then
  redis.call('SET', KEYS[6], '1')
end
local apps = tonumber(ARGV[4])
local position = 5 + apps
local running_count = tonumber(ARGV[position])
local running_added = 0
for i = position + 1, position + 5 * running_count, 5 do
  local member = ARGV[i + 1]
  if not redis.call('ZSCORE', KEYS[2], member) then
    running_added = running_added + redis.call('ZADD', KEYS[2], ARGV[i], member)
    redis.call('HSET', KEYS[3], member, ARGV[i + 2] .. '\t' .. ARGV[i + 3] .. '\t' .. ARGV[i + 4])
  end
end
local ready_added = 0
for i = position + 1 + 5 * running_count, #ARGV, 5 do
  local index = tonumber(ARGV[i])
  local member = ARGV[i + 3]
  if not redis.call('ZSCORE', KEYS[2], member) then
    if redis.call('ZADD', KEYS[7 + index], 'NX', ARGV[i + 1], ARGV[i + 2]) == 1 then
      ready_added = ready_added + 1
      redis.call('HSET', KEYS[3], member, ARGV[4 + index] .. '\t' .. ARGV[i + 4])
      redis.call('SADD', KEYS[5], ARGV[4 + index])
    end
  end
end
-- Recount from the running set and the ready queues: what they hold is the truth (the
-- apps' passes and the usual run time are kept; they are history, not counts).
local kept = {}
local fields = redis.call('HGETALL', KEYS[4])
for i = 1, #fields, 2 do
  if string.sub(fields[i], 1, 5) == 'pass:' or fields[i] == 'dref' then
    kept[#kept + 1] = fields[i]
    kept[#kept + 1] = fields[i + 1]
  end
end
redis.call('DEL', KEYS[4])
if #kept > 0 then
  redis.call('HSET', KEYS[4], unpack(kept))
end
local members = redis.call('ZRANGE', KEYS[2], 0, -1)
for _, member in ipairs(members) do
  local info = redis.call('HGET', KEYS[3], member)
  if info then
    local app, cost, url = string.match(info, '^([^\t]*)\t(%d+)\t?([^\t]*)')
    redis.call('HINCRBY', KEYS[4], 'inflight', cost)
    redis.call('HINCRBY', KEYS[4], 'app:' .. app, cost)
    if url ~= '' then
      redis.call('HINCRBY', KEYS[4], 'ep:' .. url, cost)
    end
  end
end
local ready = 0
for index = 1, apps do
  ready = ready + redis.call('ZCARD', KEYS[7 + index])
end
redis.call('HSET', KEYS[4], 'ready', ready)
if rebuilt == 1 then
  redis.call('SET', KEYS[1], ARGV[1])
end
return {rebuilt, running_added, ready_added}
