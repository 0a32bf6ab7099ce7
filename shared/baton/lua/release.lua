-- Free the slot of one attempt and give its cost back to the algorithm, its app and its
-- endpoint. Slots are per attempt, so a late release of attempt N never frees N+1's.
-- KEYS[1] running   (zset: score deadline or lease, member "<task_id>:<attempt>")
-- KEYS[2] attempts  (hash: running member -> "<app>\t<cost>[\t<endpoint url>]")
-- KEYS[3] counts    (hash: inflight, app:<app>, ep:<url>, in cost units)
-- ARGV[1] running member
-- ARGV[2] (optional) the score the caller saw: release only if the slot still has it.
--         An expired admission lease is taken back this way unless its worker confirmed
--         the slot meanwhile (confirmation moves the score to the attempt's deadline).
-- Returns 1 if the slot was released, 0 if it was not held (or was claimed).
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or (ARGV[2] and tonumber(score) ~= tonumber(ARGV[2])) then
  return 0
end
redis.call('ZREM', KEYS[1], ARGV[1])
local info = redis.call('HGET', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
if info then
  local app, cost, url = string.match(info, '^([^\t]*)\t(%d+)\t?(.*)$')
  cost = tonumber(cost)
  redis.call('HINCRBY', KEYS[3], 'inflight', -cost)
  redis.call('HINCRBY', KEYS[3], 'app:' .. app, -cost)
  if url ~= '' then
    redis.call('HINCRBY', KEYS[3], 'ep:' .. url, -cost)
  end
end
return 1
