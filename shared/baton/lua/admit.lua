-- Admit ready tasks of one algorithm into free capacity, by the scheduling policy, in
-- one atomic step: the app furthest below its weighted share goes first, its best task
-- (priority, then age) goes to the least-loaded endpoint with room for its cost, and
-- admits no more than the rate limit lets it send now. The caps, weights, quotas,
-- rate and pause are read from the policy hash, so every caller enforces the same
-- policy.
--
-- An app's share is measured by its pass: the capacity it was given, over its weight.
-- Admitting a task adds cost / weight; when the attempt ends, release.lua corrects that
-- by how long it ran against the algorithm's usual run time, so the pass counts
-- capacity-time. The app with the lowest pass goes first (ties: the oldest head). An app
-- that becomes backlogged starts at the lowest pass of those already waiting
-- (enqueue.lua), so time spent idle is not saved up to be spent at others' expense.
--
-- A head that does not fit although there is room (its cost is above the room left on
-- the algorithm or on every endpoint that is not cooling down) is reserved: nothing
-- else is admitted until it fits, so smaller tasks and other apps cannot starve it. A
-- head that can never fit (cost above every endpoint's cap) is passed over.
--
-- KEYS[1]  policy      (hash: cap, endpoints, url:<i>, cap:<i>, paused, rate_interval,
--                       rate_burst, weight:<app>, limit:<app>)
-- KEYS[2]  epoch       (string, written by reconcile; absent after Redis lost its data)
-- KEYS[3]  hold        (string: an operator paused the algorithm)
-- KEYS[4]  running     (zset: score deadline or lease, member "<task_id>:<attempt>")
-- KEYS[5]  attempts    (hash: running member -> "<app>\t<cost>[\t<endpoint url>\t<admitted at>]")
-- KEYS[6]  counts      (hash: inflight, app:<app>, ep:<url> in cost units; ready entries;
--                       pass:<app>; dref, the usual run time)
-- KEYS[7]  cooldown    (hash: endpoint url -> time until which it cools down)
-- KEYS[8]  rate        (string: the rate limit's theoretical arrival time, GCRA; read)
-- KEYS[9]  reserve     (string: "<app>\t<ready member>" of the head waiting for room)
-- KEYS[10] apps        (set: apps with ready tasks)
-- KEYS[11..] ready queue of each app in ARGV[4..] (zset: score -priority,
--            member "<created_ms>:<task_id>:<attempt>")
-- ARGV[1] lease score: the slot is released by the sweep if not confirmed by then
-- ARGV[2] most tasks to admit in this call
-- ARGV[3] now (seconds since the epoch)
-- ARGV[4..] app names, in the order of their ready queues in KEYS
-- Returns false when the epoch marker is missing (reconcile first); {'policy'} when the
-- policy is missing (write it, then call again); {'apps', <app>...} when an app with
-- ready tasks was not passed (call again with these); else {'ok', <why it stopped>,
-- then <running member>, <endpoint url>, <app>, <cost> for each admitted attempt}.
if redis.call('EXISTS', KEYS[2]) == 0 then
  return false
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'policy'}
end

local ready_key = {}
for i = 4, #ARGV do
  ready_key[ARGV[i]] = KEYS[i + 7]
end
local backlogged = redis.call('SMEMBERS', KEYS[10])
for _, app in ipairs(backlogged) do
  if not ready_key[app] then
    local answer = {'apps'}
    for _, name in ipairs(backlogged) do
      answer[#answer + 1] = name
    end
    return answer
  end
end

local function as_table(flat)
  local t = {}
  for i = 1, #flat, 2 do
    t[flat[i]] = flat[i + 1]
  end
  return t
end

local policy = as_table(redis.call('HGETALL', KEYS[1]))
if policy['paused'] == '1' or redis.call('EXISTS', KEYS[3]) == 1 then
  return {'ok', 'paused'}
end

local now = tonumber(ARGV[3])
local counts = as_table(redis.call('HGETALL', KEYS[6]))
local cooldown = as_table(redis.call('HGETALL', KEYS[7]))
local function count(field)
  return tonumber(counts[field] or '0')
end
local function add(field, by)
  counts[field] = tostring(count(field) + by)
  redis.call('HINCRBY', KEYS[6], field, by)
end

local cap = tonumber(policy['cap'])
local endpoints = {}
local largest = 0
for i = 1, tonumber(policy['endpoints']) do
  local url, ecap = policy['url:' .. i], tonumber(policy['cap:' .. i])
  endpoints[#endpoints + 1] = {url = url, cap = ecap}
  largest = math.max(largest, ecap)
end
largest = math.min(largest, cap)

-- The rate limit (GCRA): the request is taken by confirm.lua, just before it is sent,
-- so that what the algorithm receives keeps the limit; admission only admits as many as
-- it could send now.
local interval = tonumber(policy['rate_interval'] or '0')
local tokens = 0
if interval > 0 then
  local tolerance = (tonumber(policy['rate_burst'] or '1') - 1) * interval
  local wait = math.max(0, tonumber(redis.call('GET', KEYS[8]) or '0') - now)
  if wait <= tolerance + 1e-9 then
    tokens = math.floor((tolerance - wait) / interval + 1e-9) + 1
  end
end

local function head_of(app)
  local first = redis.call('ZRANGE', ready_key[app], 0, 0)
  if #first == 0 then
    return nil
  end
  local entry = first[1]
  local running = string.sub(entry, string.find(entry, ':', 1, true) + 1)
  local info = redis.call('HGET', KEYS[5], running)
  local cost = 1
  if info then
    cost = tonumber(string.match(info, '^[^\t]*\t(%d+)'))
  end
  return {entry = entry, running = running, cost = cost,
          created = tonumber(string.sub(entry, 1, string.find(entry, ':', 1, true) - 1))}
end

-- The least-loaded endpoint with room for cost that is not cooling down; else nil and
-- why: 'cooling_down' when one had room but cools down, 'capacity' when none had room.
local function endpoint_for(cost)
  local best, best_ratio, why = nil, nil, 'capacity'
  for _, endpoint in ipairs(endpoints) do
    local load = count('ep:' .. endpoint.url)
    if endpoint.cap - load >= cost then
      if tonumber(cooldown[endpoint.url] or '0') > now then
        why = 'cooling_down'
      else
        local ratio = load / endpoint.cap
        if best == nil or ratio < best_ratio then
          best, best_ratio = endpoint, ratio
        end
      end
    end
  end
  return best, why
end

-- The app furthest below its weighted share that may take its head, with that head.
-- Else nil and why: 'app_limit' when an app's head waits for its quota, else 'empty'.
local function choose()
  local chosen, chosen_head, chosen_pass = nil, nil, nil
  local why = 'empty'
  for app, _ in pairs(ready_key) do
    local head = head_of(app)
    if head == nil then
      redis.call('SREM', KEYS[10], app)
    else
      local limit = tonumber(policy['limit:' .. app] or '0')
      local fits_quota = limit == 0 or count('app:' .. app) + head.cost <= limit
      if not fits_quota then
        why = 'app_limit'
      elseif head.cost <= largest then
        local pass = tonumber(counts['pass:' .. app] or '0')
        if chosen == nil or pass < chosen_pass
            or (pass == chosen_pass and head.created < chosen_head.created) then
          chosen, chosen_head, chosen_pass = app, head, pass
        end
      end
    end
  end
  return chosen, chosen_head, why
end

local admitted = {'ok', 'empty'}
local wanted = tonumber(ARGV[2])
while wanted > 0 do
  local app, head = nil, nil
  local reserved = redis.call('GET', KEYS[9])
  if reserved then
    local tab = string.find(reserved, '\t', 1, true)
    app = string.sub(reserved, 1, tab - 1)
    head = ready_key[app] and head_of(app)
    if head == nil or head.entry ~= string.sub(reserved, tab + 1) or head.cost > largest then
      -- The reserved task left (admitted elsewhere, or a higher priority came first).
      redis.call('DEL', KEYS[9])
      app, head = nil, nil
    end
  end
  if head == nil then
    local why
    app, head, why = choose()
    if head == nil then
      admitted[2] = why
      break
    end
  end
  local endpoint, why = nil, 'capacity'
  local free = cap - count('inflight')
  if head.cost <= free then
    endpoint, why = endpoint_for(head.cost)
  end
  if endpoint == nil then
    -- Room that is there but too small for this head is kept for it (smaller tasks
    -- would otherwise take every unit as it frees); a full algorithm keeps nothing.
    if free > 0 and endpoint_for(1) then
      redis.call('SET', KEYS[9], app .. '\t' .. head.entry)
    end
    admitted[2] = why
    break
  end
  if interval > 0 then
    if tokens < 1 then
      admitted[2] = 'rate_limit'
      break
    end
    tokens = tokens - 1
  end
  redis.call('ZREM', ready_key[app], head.entry)
  add('ready', -1)
  if redis.call('ZCARD', ready_key[app]) == 0 then
    redis.call('SREM', KEYS[10], app)
  end
  if reserved then
    redis.call('DEL', KEYS[9])
  end
  -- A stale duplicate of an attempt that already holds a slot is dropped, not admitted:
  -- admitting it would let its loser release the winner's slot.
  if not redis.call('ZSCORE', KEYS[4], head.running) then
    redis.call('ZADD', KEYS[4], ARGV[1], head.running)
    redis.call('HSET', KEYS[5], head.running,
               app .. '\t' .. head.cost .. '\t' .. endpoint.url .. '\t' .. ARGV[3])
    local weight = tonumber(policy['weight:' .. app] or '1')
    local pass = tonumber(counts['pass:' .. app] or '0') + head.cost / weight
    counts['pass:' .. app] = tostring(pass)
    redis.call('HSET', KEYS[6], 'pass:' .. app, tostring(pass))
    add('inflight', head.cost)
    add('app:' .. app, head.cost)
    add('ep:' .. endpoint.url, head.cost)
    admitted[#admitted + 1] = head.running
    admitted[#admitted + 1] = endpoint.url
    admitted[#admitted + 1] = app
    admitted[#admitted + 1] = head.cost
    wanted = wanted - 1
  end
end
if wanted == 0 then
  admitted[2] = 'limit'
end
return admitted
