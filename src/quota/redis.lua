-- sesgate's quota scripts for Redis / Valkey. Each runs atomically on the server, so two
-- instances checking at once can never both take the last recipients of a quota. The time is
-- the server's (TIME), one clock for every instance. Mirrors src/quota/window.rs; a section of
-- this file runs as one script (see redis.rs): the PRELUDE is prepended to each.
--
-- KEYS, for each scope i: KEYS[2i-1] its rate bucket (hash: tokens, at), KEYS[2i] its 24-hour
-- window (hash: total, tail, and one field per minute holding that minute's recipients).
-- ARGV[1] the recipients; ARGV[2i] scope i's rate (recipients per second, 0: none) and
-- ARGV[2i+1] its 24-hour quota (0: none).

--@PRELUDE
local WINDOW = 1440
local MINUTE_MS = 60000
-- A window outlives its last bucket by a minute; then Redis drops it.
local WINDOW_TTL_MS = (WINDOW + 2) * MINUTE_MS

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- The recipients still in a 24-hour window at `minute`, once the buckets whose recipients are
-- all older than 24 hours are gone. `tail` is the oldest minute not yet dropped.
local function trim(key, minute)
  local last = minute - WINDOW - 1
  local state = redis.call('HMGET', key, 'total', 'tail')
  if not state[1] then
    return 0
  end
  local total = tonumber(state[1])
  local tail = tonumber(state[2])
  if tail > last then
    return total
  end
  if last - tail > WINDOW then
    -- Every bucket is at most tail + WINDOW (each was added right after a trim): all older.
    redis.call('DEL', key)
    return 0
  end
  for m = tail, last do
    local count = redis.call('HGET', key, tostring(m))
    if count then
      total = total - tonumber(count)
      redis.call('HDEL', key, tostring(m))
    end
  end
  redis.call('HSET', key, 'total', total, 'tail', last + 1)
  return total
end

-- Counts n recipients in `minute` (right after a trim at that minute).
local function count_in(key, minute, n)
  redis.call('HSETNX', key, 'tail', minute - WINDOW)
  redis.call('HINCRBY', key, tostring(minute), n)
  redis.call('HINCRBY', key, 'total', n)
  redis.call('PEXPIRE', key, WINDOW_TTL_MS)
end

local function capacity(rate)
  return math.max(rate, 1)
end

-- A rate bucket's tokens at `now`, refilled since it was last written, at most its capacity.
local function tokens_at(key, rate, now)
  local state = redis.call('HMGET', key, 'tokens', 'at')
  if not state[1] then
    return capacity(rate)
  end
  local elapsed = math.max(0, now - tonumber(state[2])) / 1000
  return math.min(capacity(rate), tonumber(state[1]) + rate * elapsed)
end

local function write_bucket(key, rate, tokens, now)
  redis.call('HSET', key, 'tokens', string.format('%.17g', tokens), 'at', now)
  -- Once it would be full again the key may go: a missing bucket reads as full.
  local refill_ms = math.ceil((capacity(rate) - tokens) / rate * 1000)
  redis.call('PEXPIRE', key, math.max(1000, refill_ms + 1000))
end

--@RESERVE
-- Checks every scope's 24-hour quota, then every rate, and only when all admit takes the
-- recipients from each. Replies {status, scope, wait_ms, minute, total_1, ..., total_k}:
-- status 0 a 24-hour quota is exhausted (scope is its index), 1 a rate needs wait_ms more, 2
-- taken (total_i the window's recipients after this, -1 where the scope has no 24-hour quota).
local n = tonumber(ARGV[1])
local count = #KEYS / 2
local now = now_ms()
local minute = math.floor(now / MINUTE_MS)
local totals = {}
for i = 1, count do
  local daily = tonumber(ARGV[2 * i + 1])
  if daily > 0 then
    totals[i] = trim(KEYS[2 * i], minute)
    if totals[i] + n > daily then
      return {0, i, 0, minute}
    end
  end
end
local tokens = {}
local wait, slowest = 0, 0
for i = 1, count do
  local rate = tonumber(ARGV[2 * i])
  if rate > 0 then
    local t = tokens_at(KEYS[2 * i - 1], rate, now)
    tokens[i] = t
    if not (t >= n or t >= capacity(rate)) then
      local w = math.max(1, math.ceil((math.min(n, capacity(rate)) - t) / rate * 1000))
      if w > wait then
        wait, slowest = w, i
      end
    end
  end
end
if wait > 0 then
  return {1, slowest, wait, minute}
end
local reply = {2, 0, 0, minute}
for i = 1, count do
  local rate = tonumber(ARGV[2 * i])
  if rate > 0 then
    write_bucket(KEYS[2 * i - 1], rate, tokens[i] - n, now)
  end
  local daily = tonumber(ARGV[2 * i + 1])
  if daily > 0 then
    count_in(KEYS[2 * i], minute, n)
    reply[#reply + 1] = totals[i] + n
  else
    reply[#reply + 1] = -1
  end
end
return reply

--@REFUND
-- Gives back what RESERVE took for a message that was not relayed: the tokens (at most to a
-- full bucket) and the recipients counted in ARGV[2k+2], the minute RESERVE replied.
local n = tonumber(ARGV[1])
local count = #KEYS / 2
local minute = ARGV[2 * count + 2]
local now = now_ms()
for i = 1, count do
  local rate = tonumber(ARGV[2 * i])
  if rate > 0 then
    local t = tokens_at(KEYS[2 * i - 1], rate, now)
    write_bucket(KEYS[2 * i - 1], rate, math.min(capacity(rate), t + n), now)
  end
  if tonumber(ARGV[2 * i + 1]) > 0 then
    local counted = tonumber(redis.call('HGET', KEYS[2 * i], minute) or '0')
    local taken = math.min(n, counted)
    if taken > 0 then
      redis.call('HINCRBY', KEYS[2 * i], minute, -taken)
      redis.call('HINCRBY', KEYS[2 * i], 'total', -taken)
    end
  end
end
return 0

--@EXCEEDS
-- Whether n more recipients would exceed a 24-hour quota: the first such scope's index, or 0.
-- Takes nothing (the RCPT-time check; the end of DATA takes).
local n = tonumber(ARGV[1])
local count = #KEYS / 2
local minute = math.floor(now_ms() / MINUTE_MS)
for i = 1, count do
  local daily = tonumber(ARGV[2 * i + 1])
  if daily > 0 and trim(KEYS[2 * i], minute) + n > daily then
    return i
  end
end
return 0

--@RAISE
-- Raises a 24-hour window (KEYS[1]) to at least ARGV[1] recipients, the difference counted now;
-- replies the window's total.
local target = tonumber(ARGV[1])
local minute = math.floor(now_ms() / MINUTE_MS)
local total = trim(KEYS[1], minute)
if target > total then
  count_in(KEYS[1], minute, target - total)
  total = target
end
return total
