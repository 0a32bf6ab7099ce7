-- Free the slot of one attempt and give its cost back to the algorithm, its app and its
-- endpoint; then settle the app's pass (see admit.lua): admission charged cost / weight
-- as if the attempt would run the algorithm's usual time, so an attempt that ran longer
-- is charged more, and one that ran shorter (or never ran) gets the difference back.
-- Slots are per attempt, so a late release of attempt N never frees N+1's.
-- KEYS[1] running   (zset: score deadline or lease, member "<task_id>:<attempt>")
-- KEYS[2] attempts  (hash: running member -> "<app>\t<cost>[\t<endpoint url>\t<admitted at>]")
-- KEYS[3] counts    (hash: inflight, app:<app>, ep:<url> in cost units; pass:<app>; dref)
-- KEYS[4] policy    (hash: weight:<app>)
-- ARGV[1] running member
-- ARGV[2] now (seconds since the epoch)
-- ARGV[3] (optional) the score the caller saw: release only if the slot still has it.
--         An expired admission lease is taken back this way unless its worker confirmed
--         the slot meanwhile (confirmation moves the score to the attempt's deadline);
--         such an attempt never ran, so its whole charge is given back.
-- Returns 1 if the slot was released, 0 if it was not held (or was claimed).
local DREF_WEIGHT = 0.1  -- how much one run moves the usual run time (moving average)
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or (ARGV[3] and tonumber(score) ~= tonumber(ARGV[3])) then
  return 0
end
redis.call('ZREM', KEYS[1], ARGV[1])
local info = redis.call('HGET', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
if not info then
  return 1
end
local fields = {}
for part in string.gmatch(info .. '\t', '([^\t]*)\t') do
  fields[#fields + 1] = part
end
local app, cost, url, admitted = fields[1], tonumber(fields[2]), fields[3], tonumber(fields[4])
redis.call('HINCRBY', KEYS[3], 'inflight', -cost)
redis.call('HINCRBY', KEYS[3], 'app:' .. app, -cost)
if url and url ~= '' then
  redis.call('HINCRBY', KEYS[3], 'ep:' .. url, -cost)
end
if admitted then
  local weight = tonumber(redis.call('HGET', KEYS[4], 'weight:' .. app) or '1')
  local charged = cost / weight
  local settled = 0
  if not ARGV[3] then
    local ran = math.max(0, tonumber(ARGV[2]) - admitted)
    local usual = tonumber(redis.call('HGET', KEYS[3], 'dref') or '0')
    if usual > 0 then
      settled = charged * ran / usual
      usual = usual + DREF_WEIGHT * (ran - usual)
    else
      settled = charged
      usual = ran
    end
    redis.call('HSET', KEYS[3], 'dref', tostring(usual))
  end
  local pass = tonumber(redis.call('HGET', KEYS[3], 'pass:' .. app) or '0')
  redis.call('HSET', KEYS[3], 'pass:' .. app, tostring(pass - charged + settled))
end
return 1
