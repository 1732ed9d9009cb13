--[[
appendEvent: append one event to a delivery's log, atomically (layout 2).

Guards storage invariants only (business rules live in TypeScript): the
expected version, request idempotency, gap-free numbering. Then the writes,
the feed entry (trimmed by age), the index move and the publications, all or
nothing. Every key shares the partition's hash tag (one cluster slot).

KEYS[1] l:{p}:<id>        List: StoredEvent bytes; version = position + 1
KEYS[2] q:{p}:<id>        Hash: request field -> "<version>:<fingerprint>"
KEYS[3] f:{p}             Stream: the partition's change feed
KEYS[4] i:{p}:<before>    ZSet: index of the status before (KEYS[5] again for a creation)
KEYS[5] i:{p}:<after>     ZSet: index of the status after
KEYS[6] x:{p}             ZSet: finished deliveries to delete, by due time

ARGV[1] the small fields, each ended by a NUL byte, in this order:
        expected version (the stored version this command was decided on);
        fingerprint of the command; the delivery id; index member
        "<created_at ms, 13 digits><id>"; status before, as its number (0: none);
        status after; event type code; now, ms (the feed entry's time; never
        below the feed's last entry); feed retention, ms (entries older than
        now - this are trimmed); due time of deletion, ms, or "" (kept forever /
        not finished); the delivery's channel; the partition's channel
        ("<entry before> <entry> <id> <version> <statuses> <payload>");
        then, to the end, the request field ("r<request_id>" or "a<private key>",
        any bytes). One argument instead of thirteen: ioredis frames each
        argument on its own, a large part of an append's cost in the service.
ARGV[2] the event (StoredEvent bytes)
ARGV[3] the update (WatchDeliveryResponse bytes), published on the delivery's channel

Replies:
  {"appended", version, feed entry id, the feed entry before it}
  {"conflict", currentVersion}          stored version differs from the expected one
  {"duplicate", "<version>:<fp>"}       request field already recorded: nothing written
]]
local packed = ARGV[1]
local f = {}
local from = 1
for i = 1, 12 do
  local nul = string.find(packed, '\0', from, true)
  if not nul then
    return redis.error_reply('appendEvent: ARGV[1] has fewer than 12 fields')
  end
  f[i] = string.sub(packed, from, nul - 1)
  from = nul + 1
end
local expected, fingerprint, deliveryId, member = f[1], f[2], f[3], f[4]
local before, after, eventCode, now, retention, due = f[5], f[6], f[7], f[8], f[9], f[10]
local channel, partitionChannel = f[11], f[12]
local request = string.sub(packed, from)
local event, update = ARGV[2], ARGV[3]

local prior = redis.call('HGET', KEYS[2], request)
if prior then
  return {'duplicate', prior}
end

local current = redis.call('LLEN', KEYS[1])
if tostring(current) ~= expected then
  return {'conflict', tostring(current)}
end
local version = tostring(current + 1)

redis.call('RPUSH', KEYS[1], event)
redis.call('HSET', KEYS[2], request, version .. ':' .. fingerprint)

if before ~= after then
  if before ~= '0' then
    redis.call('ZREM', KEYS[4], member)
  end
  redis.call('ZADD', KEYS[5], 0, member)
end
if due ~= '' then
  redis.call('ZADD', KEYS[6], due, after .. member)
end

-- Feed ids are times; a replica whose clock is behind the last entry's uses the last entry's time.
local ms = now
local last = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)[1]
local previousId = '0-0'
if last then
  previousId = last[1]
  local lastMs = string.match(last[1], '^(%d+)-')
  if string.len(lastMs) > string.len(ms) or (string.len(lastMs) == string.len(ms) and lastMs > ms) then
    ms = lastMs
  end
end
local minId = tostring(math.max(0, tonumber(now) - tonumber(retention)))
local feedId = redis.call('XADD', KEYS[3], 'MINID', minId, ms .. '-*',
  'd', deliveryId, 'v', version, 's', before .. after, 't', eventCode)

redis.call('SPUBLISH', channel, update)
-- The partition's message: the entry before, the entry, then the update itself (see codec.ts).
redis.call('SPUBLISH', partitionChannel, previousId .. ' ' .. feedId .. ' ' .. deliveryId .. ' ' .. version .. ' ' .. before .. after .. ' ' .. update)
return {'appended', version, feedId, previousId}
