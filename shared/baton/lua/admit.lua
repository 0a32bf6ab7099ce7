-- Admit the best ready tasks of one algorithm while it has free slots: the concurrency
-- cap is checked and the slot taken in this one atomic step.
-- KEYS[1] ready queue   (zset: score -priority, member "<created_ms>:<task_id>:<attempt>")
-- KEYS[2] running set   (zset: score deadline or lease, member "<task_id>:<attempt>")
-- KEYS[3] epoch marker  (string, written by reconcile; absent after Redis lost its data)
-- KEYS[4] cool-down     (string: time until which the algorithm asked for a pause, e.g. a 429)
-- ARGV[1] max_concurrency of the algorithm
-- ARGV[2] lease score: the slot is released by the sweep if not confirmed by then
-- ARGV[3] most tasks to admit in this call
-- ARGV[4] now (seconds since the epoch)
-- Returns nil when the epoch marker is missing (reconcile first), else the list of
-- admitted running members (empty while the algorithm cools down).
if redis.call('EXISTS', KEYS[3]) == 0 then
  return false
end
local paused_until = redis.call('GET', KEYS[4])
if paused_until and tonumber(paused_until) > tonumber(ARGV[4]) then
  return {}
end
local free = tonumber(ARGV[1]) - redis.call('ZCARD', KEYS[2])
local wanted = math.min(free, tonumber(ARGV[3]))
local admitted = {}
while wanted > 0 do
  local popped = redis.call('ZPOPMIN', KEYS[1])
  if #popped == 0 then
    break
  end
  local entry = popped[1]
  local running = string.sub(entry, string.find(entry, ':', 1, true) + 1)
  -- A stale duplicate of an attempt that already holds a slot is dropped, not admitted:
  -- admitting it would let its loser release the winner's slot.
  if not redis.call('ZSCORE', KEYS[2], running) then
    redis.call('ZADD', KEYS[2], ARGV[2], running)
    admitted[#admitted + 1] = running
    wanted = wanted - 1
  end
end
return admitted
