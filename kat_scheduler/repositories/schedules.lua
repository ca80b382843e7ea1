-- kat_scheduler's schedule store: the changes that touch more than one key, each atomic.
--
-- Loaded as a Redis function library (see queues/lua_library.py): main(keys, args) below is the
-- function. keys[1] is the store's prefix, "{<prefix>:schedules:<kind>}" (S below); args[1] names the
-- operation; while a call runs, S and ARGV hold its prefix and arguments. Layout:
--   S:s:<id>           string  the schedule as JSON (written by the caller, opaque here)
--   S:hash             hash    work identity -> schedule id (one schedule per identity)
--   S:due              zset    schedule id -> deadline (ms), enabled schedules with a deadline only
--   S:all              zset    schedule id -> created (ms), for listing
--   S:ooi:<org>:<ooi>  set     ids of the schedules of one OOI

local S, ARGV

local function ooi_key(org, ooi) return S .. ":ooi:" .. org .. ":" .. ooi end

-- put: ARGV[2..] one argument per schedule: id, hash, previous hash ("" for a new schedule),
-- organisation, OOI ("" for none), deadline ms ("" for none), "1" when enabled, created ms and the
-- JSON, joined by SEP (JSON never holds a raw SEP).
-- Replies per schedule "ok", "duplicate:<id>" when another schedule has the identity, or "unknown"
-- when an update names a schedule that is gone.
local function put_one(id, hash, previous, org, ooi, deadline, enabled, created, json)
    enabled = enabled == "1"
    local holder = redis.call("HGET", S .. ":hash", hash)
    if holder and holder ~= id then return "duplicate:" .. holder end
    if previous ~= "" and redis.call("EXISTS", S .. ":s:" .. id) == 0 then return "unknown" end
    if previous ~= "" and previous ~= hash then redis.call("HDEL", S .. ":hash", previous) end
    redis.call("HSET", S .. ":hash", hash, id)
    redis.call("SET", S .. ":s:" .. id, json)
    redis.call("ZADD", S .. ":all", "NX", created, id)
    if ooi ~= "" then redis.call("SADD", ooi_key(org, ooi), id) end
    if enabled and deadline ~= "" then
        redis.call("ZADD", S .. ":due", deadline, id)
    else
        redis.call("ZREM", S .. ":due", id)
    end
    return "ok"
end

local FIELD = "([^\31]*)\31"
local PUT_ITEM = "^" .. FIELD .. FIELD .. FIELD .. FIELD .. FIELD .. FIELD .. FIELD .. FIELD .. "(.*)$"

local function put()
    local items = {}
    for i = 2, #ARGV do
        local item = {string.match(ARGV[i], PUT_ITEM)}
        if #item ~= 9 or item[1] == "" or item[2] == "" then
            return redis.error_reply("put: schedule " .. (i - 1) .. " is not nine fields joined by 0x1f")
        end
        items[#items + 1] = item
    end
    local replies = {}
    for n, f in ipairs(items) do
        replies[n] = put_one(f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[9])
    end
    return replies
end

local function delete_one(id, hash, org, ooi)
    if redis.call("DEL", S .. ":s:" .. id) == 0 then return "unknown" end
    if redis.call("HGET", S .. ":hash", hash) == id then redis.call("HDEL", S .. ":hash", hash) end
    redis.call("ZREM", S .. ":due", id)
    redis.call("ZREM", S .. ":all", id)
    if ooi ~= "" then redis.call("SREM", ooi_key(org, ooi), id) end
    return "ok"
end

-- delete: ARGV[2..] four arguments per schedule: id, hash, organisation, OOI ("" for none).
-- Replies per schedule "ok", or "unknown" when it was gone already.
local function delete()
    if (#ARGV - 1) % 4 ~= 0 then return redis.error_reply("delete: schedules come as four fields each") end
    local replies = {}
    for i = 2, #ARGV, 4 do replies[#replies + 1] = delete_one(ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]) end
    return replies
end

local operations = {put = put, delete = delete}

local function main(keys, args)
    S, ARGV = keys[1], args
    local operation = operations[args[1]]
    if not operation then return redis.error_reply("unknown schedule operation: " .. tostring(args[1])) end
    return operation()
end
