-- Acquire one concurrency slot among candidate upstream keys, atomically.
--
-- Each slot set is a sorted set: member = holder id, score = lease expiry
-- (ms, Redis clock). Expired holders are dropped first, so a crashed
-- instance's slots come back on their own.
--
-- KEYS: the required sets (token, user), then the candidate sets, tier by tier.
-- ARGV[1] holder id
-- ARGV[2] lease (ms)
-- ARGV[3] number of required sets R
-- ARGV[4] a random number in [0, 1) for the weighted choice
-- ARGV[5 .. 4+R] limits of the required sets
-- then, per candidate: limit, weight, tier
--
-- Returns the 1-based index of the chosen candidate (1 when there are no
-- candidates and the required sets had room), 0 if every candidate is full,
-- or -i if required set i is full.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local holder = ARGV[1]
local lease = tonumber(ARGV[2])
local required = tonumber(ARGV[3])
local roll = tonumber(ARGV[4])

local function used(key)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  return redis.call('ZCARD', key)
end

for i = 1, required do
  local limit = tonumber(ARGV[4 + i])
  if used(KEYS[i]) >= limit then
    return -i
  end
end

local expiry = now + lease
local base = 4 + required
local candidates = #KEYS - required
if candidates == 0 then
  for i = 1, required do
    redis.call('ZADD', KEYS[i], expiry, holder)
    redis.call('PEXPIRE', KEYS[i], lease * 2)
  end
  return 1
end
local chosen = 0
local tier = nil
local total = 0
local weights = {}
for c = 1, candidates do
  local limit = tonumber(ARGV[base + (c - 1) * 3 + 1])
  local weight = tonumber(ARGV[base + (c - 1) * 3 + 2])
  local this_tier = tonumber(ARGV[base + (c - 1) * 3 + 3])
  if tier ~= nil and this_tier ~= tier then
    if total > 0 then
      break
    end
  end
  tier = this_tier
  local free = limit - used(KEYS[required + c])
  if free > 0 then
    -- Weight, scaled by the share of the key still free: least-loaded keys
    -- are preferred, in proportion to their weight.
    local w = math.max(weight, 0.001) * free / limit
    weights[c] = w
    total = total + w
  end
end
if total <= 0 then
  return 0
end
local target = roll * total
for c, w in pairs(weights) do
  chosen = c
  target = target - w
  if target < 0 then
    break
  end
end

for i = 1, required do
  redis.call('ZADD', KEYS[i], expiry, holder)
  redis.call('PEXPIRE', KEYS[i], lease * 2)
end
local key = KEYS[required + chosen]
redis.call('ZADD', key, expiry, holder)
redis.call('PEXPIRE', key, lease * 2)
return chosen
