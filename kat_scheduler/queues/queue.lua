-- kat_scheduler's priority queue: every operation on one queue, each one atomic.
--
-- KEYS[1] is the queue's prefix, "{<prefix>:<kind>}"; every key below starts with it, so all keys of
-- one queue hash to one Redis Cluster slot. ARGV[1] names the operation, ARGV[2] is the caller's
-- clock in milliseconds, the rest belong to the operation.
--
-- Layout (P = KEYS[1]):
--   P:t:<id>          hash    the task record
--   P:q:<org>         zset    queued tasks of one organisation: member "<seq:12 hex><id>", score
--                             = rank (lower first; negative = manual); the seq keeps equal ranks FIFO
--   P:orgs            zset    organisations with queued work, in serving order:
--                             score = band * BAND + turn (band 0 when the head is manual, else 1)
--   P:active          hash    work identity -> task id, for queued, dispatched and running tasks
--   P:ooi:<org>:<pk>  set     ids of the queued tasks of one OOI
--   P:leases          zset    claimed task id -> lease deadline (ms)
--   P:dead            zset    dead-lettered task id -> time (ms)
--   P:counts          hash    organisation -> number of queued tasks
--   P:size            string  number of queued tasks
--   P:history         zset    task id -> created (ms), for listing records
--   P:lastrun         hash    work identity -> end of its last finished run (ms)
--   P:seq, P:turn     string  counters
--
-- Each operation checks everything first and writes after, so a refusal leaves nothing half-written.

local P = KEYS[1]
local op = ARGV[1]
local now = tonumber(ARGV[2])
local BAND = 1e15
local unpack = unpack or table.unpack -- Lua 5.1 in Redis, 5.4 elsewhere

local function record_key(id) return P .. ":t:" .. id end
local function org_key(org) return P .. ":q:" .. org end
local function ooi_key(org, ooi) return P .. ":ooi:" .. org .. ":" .. ooi end
local function member_of(seq, id) return string.format("%012x", seq) .. id end

-- Put an organisation in its place in the serving order after its queue changed. A served
-- organisation (new_turn) goes to the back of its band; otherwise it keeps its turn.
local function place_org(org, new_turn)
    local head = redis.call("ZRANGE", org_key(org), 0, 0, "WITHSCORES")
    if #head == 0 then
        redis.call("ZREM", P .. ":orgs", org)
        return
    end
    local band = 1
    if tonumber(head[2]) < 0 then band = 0 end
    local current = redis.call("ZSCORE", P .. ":orgs", org)
    local turn
    if new_turn or not current then
        turn = redis.call("INCR", P .. ":turn")
    else
        turn = tonumber(current) % BAND
    end
    redis.call("ZADD", P .. ":orgs", band * BAND + turn, org)
end

-- Queue an existing record (new, released or reaped): sorted set, OOI index, counters.
local function enqueue(id, org, member, score, ooi)
    redis.call("ZADD", org_key(org), score, member)
    if ooi ~= "" then redis.call("SADD", ooi_key(org, ooi), id) end
    redis.call("HINCRBY", P .. ":counts", org, 1)
    redis.call("INCR", P .. ":size")
    place_org(org, false)
end

-- Take a queued record out of the queue structures.
local function dequeue(id, org, member, ooi, served)
    redis.call("ZREM", org_key(org), member)
    if ooi ~= "" then redis.call("SREM", ooi_key(org, ooi), id) end
    if redis.call("HINCRBY", P .. ":counts", org, -1) <= 0 then redis.call("HDEL", P .. ":counts", org) end
    redis.call("DECR", P .. ":size")
    place_org(org, served)
end

local function release_identity(hash, id)
    if redis.call("HGET", P .. ":active", hash) == id then redis.call("HDEL", P .. ":active", hash) end
end

local RECORD_FIELDS = {"org", "hash", "status", "prio", "seq", "attempts", "data", "ooi", "plugin",
                       "schedule", "created", "modified"}

local function read_record(id)
    local values = redis.call("HMGET", record_key(id), unpack(RECORD_FIELDS))
    if not values[1] then return nil end
    local record = {id = id}
    for i, field in ipairs(RECORD_FIELDS) do record[field] = values[i] or "" end
    return record
end

local function record_reply(r)
    return {r.id, r.org, r.hash, r.status, r.prio, r.attempts, r.data, r.ooi, r.plugin, r.schedule,
            r.created, r.modified}
end

-- push: ARGV[3] max size (0 = none), ARGV[4] "1" lets manual items exceed it, ARGV[5] "1" lets
-- a push re-prioritise a queued task of the same identity, then 8 fields per item:
-- id, organisation, hash, score, plugin, ooi, data, schedule id.
-- Replies one string per item: "queued", "updated:<id>", "duplicate:<id>:<status>", "full", "id_taken".
local function push()
    local maxsize = tonumber(ARGV[3])
    local manual_may_overflow = ARGV[4] == "1"
    local may_update = ARGV[5] == "1"
    local width = 8
    local count = (#ARGV - 5) / width
    if count ~= math.floor(count) or count < 1 then return redis.error_reply("push: bad argument count") end
    for i = 0, count - 1 do
        local base = 6 + i * width
        if ARGV[base] == "" or ARGV[base + 1] == "" or ARGV[base + 2] == "" then
            return redis.error_reply("push: item " .. (i + 1) .. " lacks an id, organisation or hash")
        end
        if not tonumber(ARGV[base + 3]) then
            return redis.error_reply("push: item " .. (i + 1) .. " has a score that is not a number")
        end
    end
    local size = tonumber(redis.call("GET", P .. ":size") or "0")
    local replies = {}
    for i = 0, count - 1 do
        local base = 6 + i * width
        local id, org, hash, score = ARGV[base], ARGV[base + 1], ARGV[base + 2], ARGV[base + 3]
        local plugin, ooi, data, schedule = ARGV[base + 4], ARGV[base + 5], ARGV[base + 6], ARGV[base + 7]
        local holder = redis.call("HGET", P .. ":active", hash)
        if holder then
            local status = redis.call("HGET", record_key(holder), "status")
            if may_update and status == "queued" then
                local seq = redis.call("HGET", record_key(holder), "seq")
                redis.call("ZADD", org_key(org), score, member_of(tonumber(seq), holder))
                redis.call("HSET", record_key(holder), "prio", score, "modified", ARGV[2])
                place_org(org, false)
                replies[#replies + 1] = "updated:" .. holder
            else
                replies[#replies + 1] = "duplicate:" .. holder .. ":" .. (status or "unknown")
            end
        elseif redis.call("EXISTS", record_key(id)) == 1 then
            replies[#replies + 1] = "id_taken"
        elseif maxsize > 0 and size >= maxsize and not (manual_may_overflow and tonumber(score) < 0) then
            replies[#replies + 1] = "full"
        else
            local seq = redis.call("INCR", P .. ":seq")
            redis.call("HSET", record_key(id), "org", org, "hash", hash, "status", "queued", "prio", score,
                "seq", seq, "attempts", 0, "data", data, "ooi", ooi, "plugin", plugin, "schedule", schedule,
                "created", ARGV[2], "modified", ARGV[2])
            redis.call("HSET", P .. ":active", hash, id)
            redis.call("ZADD", P .. ":history", now, id)
            enqueue(id, org, member_of(seq, id), score, ooi)
            size = size + 1
            replies[#replies + 1] = "queued"
        end
    end
    return replies
end

-- Find the next task for a claim: the best task of the organisation whose turn it is; with a
-- plugin filter, the first matching task in serving order within `scan_limit` looked-at tasks.
local function next_candidate(filter, scan_limit)
    local orgs = redis.call("ZRANGE", P .. ":orgs", 0, 0)
    if not filter then
        if #orgs == 0 then return nil end
        local head = redis.call("ZRANGE", org_key(orgs[1]), 0, 0)
        return orgs[1], head[1]
    end
    local looked = 0
    local org_offset = 0
    while looked < scan_limit do
        orgs = redis.call("ZRANGE", P .. ":orgs", org_offset, org_offset + 49)
        if #orgs == 0 then return nil end
        for _, org in ipairs(orgs) do
            local members = redis.call("ZRANGE", org_key(org), 0, scan_limit - looked - 1)
            for _, member in ipairs(members) do
                looked = looked + 1
                local plugin = redis.call("HGET", record_key(string.sub(member, 13)), "plugin")
                if filter[plugin] then return org, member end
            end
            if looked >= scan_limit then return nil end
        end
        org_offset = org_offset + 50
    end
    return nil
end

-- claim: ARGV[3] how many, ARGV[4] lease in ms, ARGV[5] scan limit for filtered claims, ARGV[6..]
-- plugin ids to limit the claim to (none: any plugin). Replies a list of records.
local function claim()
    local wanted, lease = tonumber(ARGV[3]), tonumber(ARGV[4])
    local scan_limit = tonumber(ARGV[5])
    local filter = nil
    if #ARGV > 5 then
        filter = {}
        for i = 6, #ARGV do filter[ARGV[i]] = true end
    end
    local claimed = {}
    while #claimed < wanted do
        local org, member = next_candidate(filter, scan_limit)
        if not org then break end
        local id = string.sub(member, 13)
        local ooi = redis.call("HGET", record_key(id), "ooi") or ""
        dequeue(id, org, member, ooi, true)
        redis.call("HINCRBY", record_key(id), "attempts", 1)
        redis.call("HSET", record_key(id), "status", "dispatched", "modified", ARGV[2])
        redis.call("ZADD", P .. ":leases", now + lease, id)
        claimed[#claimed + 1] = record_reply(read_record(id))
    end
    return claimed
end

-- Checks shared by the operations on a claimed task: it exists, is dispatched or running, and
-- (when the caller gives one) its attempt number matches the caller's claim.
local function claimed_record(id, attempt)
    local record = read_record(id)
    if not record then return nil, "unknown" end
    if record.status ~= "dispatched" and record.status ~= "running" then return nil, record.status end
    if attempt ~= "" and attempt ~= record.attempts then return nil, "stale" end
    return record, nil
end

-- Give a claimed task back to its queue with its rank and its place among equals.
local function requeue(r)
    redis.call("ZREM", P .. ":leases", r.id)
    redis.call("HSET", record_key(r.id), "status", "queued", "modified", ARGV[2])
    enqueue(r.id, r.org, member_of(tonumber(r.seq), r.id), r.prio, r.ooi)
end

-- End a task: final status, identity free, record kept for the retention period.
local function finish(r, status, retention_ms)
    redis.call("ZREM", P .. ":leases", r.id)
    redis.call("HSET", record_key(r.id), "status", status, "modified", ARGV[2])
    release_identity(r.hash, r.id)
    redis.call("PEXPIRE", record_key(r.id), retention_ms)
end

-- ack: ARGV[3] id, ARGV[4] "completed" | "failed", ARGV[5] attempt ("" = any), ARGV[6] retention ms.
local function ack()
    local status = ARGV[4]
    if status ~= "completed" and status ~= "failed" then return redis.error_reply("ack: bad status") end
    local r, problem = claimed_record(ARGV[3], ARGV[5])
    if not r then return problem end
    finish(r, status, tonumber(ARGV[6]))
    redis.call("HSET", P .. ":lastrun", r.hash, ARGV[2])
    return "ok"
end

-- running: ARGV[3] id, ARGV[4] attempt. A dispatched task has started.
local function running()
    local r, problem = claimed_record(ARGV[3], ARGV[4])
    if not r then return problem end
    redis.call("HSET", record_key(r.id), "status", "running", "modified", ARGV[2])
    return "ok"
end

-- release: ARGV[3] id, ARGV[4] attempt.
local function release()
    local r, problem = claimed_record(ARGV[3], ARGV[4])
    if not r then return problem end
    requeue(r)
    return "ok"
end

-- renew: ARGV[3] id, ARGV[4] attempt, ARGV[5] lease in ms.
local function renew()
    local r, problem = claimed_record(ARGV[3], ARGV[4])
    if not r then return problem end
    redis.call("ZADD", P .. ":leases", now + tonumber(ARGV[5]), r.id)
    return "ok"
end

-- reap: ARGV[3] max attempts, ARGV[4] how many at most, ARGV[5] retention ms.
-- Expired leases go back to the queue, or to the dead letters after max attempts.
-- Replies {requeued ids, dead-lettered ids}.
local function reap()
    local max_attempts, limit = tonumber(ARGV[3]), tonumber(ARGV[4])
    local expired = redis.call("ZRANGEBYSCORE", P .. ":leases", "-inf", now, "LIMIT", 0, limit)
    local requeued, dead = {}, {}
    for _, id in ipairs(expired) do
        local r = read_record(id)
        if not r then
            redis.call("ZREM", P .. ":leases", id)
        elseif tonumber(r.attempts) >= max_attempts then
            redis.call("ZREM", P .. ":leases", id)
            redis.call("HSET", record_key(id), "status", "failed", "modified", ARGV[2],
                "reason", "lease expired " .. r.attempts .. " times")
            release_identity(r.hash, id)
            redis.call("ZADD", P .. ":dead", now, id)
            dead[#dead + 1] = id
        else
            requeue(r)
            requeued[#requeued + 1] = id
        end
    end
    redis.call("ZREMRANGEBYSCORE", P .. ":history", "-inf", now - tonumber(ARGV[5]))
    return {requeued, dead}
end

local function cancel_one(id, retention_ms)
    local r = read_record(id)
    if not r then return "unknown" end
    if r.status ~= "queued" then return r.status end
    dequeue(id, r.org, member_of(tonumber(r.seq), id), r.ooi, false)
    finish(r, "cancelled", retention_ms)
    return "cancelled"
end

-- cancel: ARGV[3] retention ms, ARGV[4..] ids. Only queued tasks can be cancelled; replies per id
-- "cancelled" or the status that stopped it.
local function cancel()
    local replies = {}
    for i = 4, #ARGV do replies[#replies + 1] = cancel_one(ARGV[i], tonumber(ARGV[3])) end
    return replies
end

-- cancel_ooi: ARGV[3] retention ms, ARGV[4] organisation, ARGV[5] OOI. Replies the cancelled ids.
local function cancel_ooi()
    local ids = redis.call("SMEMBERS", ooi_key(ARGV[4], ARGV[5]))
    for _, id in ipairs(ids) do cancel_one(id, tonumber(ARGV[3])) end
    return ids
end

-- requeue_dead: ARGV[3] id. A dead letter goes back to its queue with a fresh attempt count.
local function requeue_dead()
    local id = ARGV[3]
    if not redis.call("ZSCORE", P .. ":dead", id) then return "not_dead" end
    local r = read_record(id)
    if not r then
        redis.call("ZREM", P .. ":dead", id)
        return "unknown"
    end
    local holder = redis.call("HGET", P .. ":active", r.hash)
    if holder then return "duplicate:" .. holder end
    redis.call("ZREM", P .. ":dead", id)
    redis.call("HSET", P .. ":active", r.hash, id)
    redis.call("HSET", record_key(id), "status", "queued", "attempts", 0, "modified", ARGV[2])
    redis.call("HDEL", record_key(id), "reason")
    redis.call("PERSIST", record_key(id))
    enqueue(id, r.org, member_of(tonumber(r.seq), id), r.prio, r.ooi)
    return "queued"
end

-- drop_dead: ARGV[3] retention ms, ARGV[4] id. The record stays for the retention period.
local function drop_dead()
    if redis.call("ZREM", P .. ":dead", ARGV[4]) == 0 then return "not_dead" end
    redis.call("PEXPIRE", record_key(ARGV[4]), tonumber(ARGV[3]))
    return "dropped"
end

local operations = {
    push = push, claim = claim, ack = ack, running = running, release = release, renew = renew,
    reap = reap, cancel = cancel, cancel_ooi = cancel_ooi, requeue_dead = requeue_dead,
    drop_dead = drop_dead,
}
local operation = operations[op]
if not operation then return redis.error_reply("unknown queue operation: " .. tostring(op)) end
return operation()
