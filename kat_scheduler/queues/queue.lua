-- kat_scheduler's priority queue: every operation on one queue, each one atomic.
--
-- Loaded as a Redis function library (see lua_library.py): main(keys, args) below is the function.
-- keys[1] is the queue's prefix, "{<prefix>:<kind>}"; every key below starts with it, so all keys of
-- one queue hash to one Redis Cluster slot. args[1] names the operation, args[2] is the caller's
-- clock in milliseconds, the rest belong to the operation. While a call runs, P, ARGV and now hold
-- its prefix, arguments and clock; the operations read them.
--
-- Layout (P = KEYS[1]):
--   P:t:<id>          string  the task record: the fields of FIELDS joined by SEP, the payload last
--   P:q:<org>         zset    queued tasks of one organisation: member "<seq><id>", score = rank
--                             (lower first; negative = manual); seq, 16 hex digits from the pushing
--                             client's clock and counter, keeps equal ranks first in, first out
--   P:qp:<org>:<plugin>  zset  the same, of one organisation's tasks of one plugin: the plugin index
--   P:po:<plugin>     set     the organisations with queued tasks of one plugin
--   P:op:<org>        set     the plugins of one organisation's queued tasks
--   P:limits          hash    plugin -> "<concurrency>:<rate count>:<rate window ms>" (0: no such limit),
--                             the plugin limits every claim honours
--   P:busy:<plugin>   set     ids of a limited plugin's claimed tasks that have not ended or gone back
--   P:starts:<plugin> zset    "<id>:<ms>" -> start (ms): a rate-limited plugin's task starts in its window
--   P:unstarted:<plugin> set  ids of a rate-limited plugin's claimed tasks that have not started yet
--   P:limits_api      set     plugins whose limit the API set or deleted: configuration leaves them be
--   P:limits_conf     set     plugins whose limit came from the configuration (SCHEDULER_PLUGIN_LIMITS)
--   P:w:<org>         zset    the same members as P:q:<org>, all scored 0, so that they sort by seq:
--                             the first is the organisation's longest-waiting task (the oldest wait)
--   P:wait_index      string  "1" once every queued task is in its P:w:<org>
--   P:plugin_index    string  "2" once every queued task is in the plugin index and P:op:<org>
--   P:orgs            zset    organisations with queued work, in serving order:
--                             score = band * BAND + turn (band 0 when the head is manual, else 1)
--   P:a:<org>:<ooi>   hash    work identity -> task id, for the active (queued, dispatched, running)
--                             tasks of one OOI ("" when a task has none); doubles as the OOI's index
--   P:leases          zset    claimed task id -> lease deadline (ms)
--   P:dead            zset    dead-lettered task id -> time (ms)
--   P:counts          hash    organisation -> number of queued tasks
--   P:h:<org>         zset    task id -> created (ms): one organisation's tasks, for listing records;
--                             reaps drop the entries older than the retention, a few organisations
--                             at a time
--   P:h               set     the organisations that have a P:h:<org>
--   P:hour:<ms>:<org> hash    status -> tasks of one organisation whose last change fell in the hour
--                             starting at <ms> and that have that status now (what /tasks/stats shows);
--                             expires two days after the hour. One hash per organisation keeps each a
--                             few fields long: a counter is found at once, not by walking every
--                             organisation's (a hash of up to 512 fields is one flat list in Redis)
--   P:hour_orgs:<ms>  set     the organisations with a P:hour:<ms>:<org>; expires with them
--   P:lastrun         hash    work identity -> end of its last finished run (ms)
--   P:turn            string  counter of the organisations' turns
--   P:dk:<key>        set     ids of one group of siblings: the same work for several organisations, run
--                             once (a claim of one takes the queued others with it; docs/queue.md)
--   P:dkof            hash    task id -> its sibling group's key, while the task is in the group
--   P:weights         hash    organisation -> weight (missing: 1): that many claims in a row per turn
--   P:credit          hash    organisation -> claims taken in its current turn, while fewer than its weight
--   P:stats           hash    counters since the queue began: claimed, dispatched, completed, failed,
--                             requeued (expired leases), dead_lettered
--   P:slots           set     ids of the tasks the dispatcher forwarded to Celery runners and that have
--                             not ended: the runner slots in use (see docs/dispatch.md)
--
-- Whenever dispatchable work appears (a push, a release, a reap) or a slot frees, the script publishes
-- on the channel P:wake, so that idle dispatchers wake without polling.
--
-- Each operation checks everything first and writes after, so a refusal leaves nothing half-written.
-- The record is one string rather than a hash: a hash holding the payload outgrows Redis' compact
-- encoding and costs more than twice the memory.

local P, ARGV, now
local BAND = 1e15
local SEP = "\31"
local HOUR = 3600000
local HOUR_KEPT = 49 * HOUR -- an hour's counters live this long after it began

-- The record's fields, in order; keep in step with RECORD_FIELDS in repositories/task_records.py.
-- ATTEMPTS counts claims (a claim's token: a runner's late word about an older claim is stale); EXPIRED
-- counts the leases that ran out, which is what SCHEDULER_MAX_ATTEMPTS bounds: a task handed back (a
-- release) has not failed an attempt.
-- HISTORY holds the status changes after the push, "<ms>,<status>[,<note>]" joined by ";" (the push itself is
-- CREATED), the oldest dropped once it outgrows HISTORY_KEPT characters.
local STATUS, PRIO, SEQ, ATTEMPTS, CREATED, MODIFIED, ORG, HASH, OOI, PLUGIN, SCHEDULE, REASON, EXPIRED, HISTORY, DATA =
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15
local HISTORY_KEPT = 600
local ONE_BY_ONE = 100 -- the most tasks a claim call takes one by one (take); in bulk, as many as asked

-- Numbers go to redis.call as strings made here: Redis turns a Lua number into a string with
-- snprintf("%.17g"), which costs more than the command it is for. Whole numbers only.
local function int(x) return string.format("%d", x) end

local function record_key(id) return P .. ":t:" .. id end
local function org_key(org) return P .. ":q:" .. org end
local function group_key(org, ooi) return P .. ":a:" .. org .. ":" .. ooi end
local function plugin_key(org, plugin) return P .. ":qp:" .. org .. ":" .. plugin end
local function plugin_orgs_key(plugin) return P .. ":po:" .. plugin end
local function waiting_key(org) return P .. ":w:" .. org end
local function org_plugins_key(org) return P .. ":op:" .. org end
local function busy_key(plugin) return P .. ":busy:" .. plugin end
local function starts_key(plugin) return P .. ":starts:" .. plugin end
local function unstarted_key(plugin) return P .. ":unstarted:" .. plugin end
local function member_of(seq, id) return seq .. id end
local function id_of(member) return string.sub(member, 17) end

-- One capture per field, the payload (which may hold anything) last: one string.match splits a record.
local FIELD = "([^" .. SEP .. "]*)" .. SEP
local SKIP = "[^" .. SEP .. "]*" .. SEP
local RECORD = "^" .. FIELD .. FIELD .. FIELD .. FIELD .. FIELD .. FIELD .. FIELD .. FIELD .. FIELD .. FIELD .. FIELD ..
    FIELD .. FIELD .. FIELD .. "(.*)$"
-- A claim in bulk rewrites only status, attempts, modified and history (claimed_record): it splits a
-- record into them and the parts between them (prio and seq, created, organisation to expired), and the
-- payload.
local CLAIMED_RECORD = "^" .. SKIP .. "(" .. SKIP .. SKIP .. ")" .. FIELD .. "(" .. SKIP .. ")" .. FIELD .. "(" ..
    SKIP .. SKIP .. SKIP .. SKIP .. SKIP .. SKIP .. SKIP .. ")" .. FIELD .. "(.*)$"
-- A record written before HISTORY existed: the same fields without it.
local RECORD_WITHOUT_HISTORY = "^" .. FIELD .. FIELD .. FIELD .. FIELD .. FIELD .. FIELD .. FIELD .. FIELD .. FIELD ..
    FIELD .. FIELD .. FIELD .. FIELD .. "(.*)$"

local function parse_record(raw)
    local r = {string.match(raw, RECORD)}
    if #r == 0 then
        r = {string.match(raw, RECORD_WITHOUT_HISTORY)}
        table.insert(r, HISTORY, "")
    end
    return r
end

local function read_record(id)
    local raw = redis.call("GET", record_key(id))
    return raw and parse_record(raw)
end

local function write_record(id, r) redis.call("SET", record_key(id), table.concat(r, SEP)) end

-- The hourly counters: how many tasks of an organisation have a status and were last changed in an hour.
local function hour_of(ms) return ms - ms % HOUR end

local function count_hour(hour, status, org, change)
    local key = P .. ":hour:" .. int(hour) .. ":" .. org
    if redis.call("HINCRBY", key, status, int(change)) == change and change > 0 then -- a new counter
        local expires, orgs = int(hour + HOUR_KEPT), P .. ":hour_orgs:" .. int(hour)
        redis.call("PEXPIREAT", key, expires)
        if redis.call("SADD", orgs, org) == 1 then redis.call("PEXPIREAT", orgs, expires) end
    end
end

-- A history with one entry more, the oldest dropped when it grows too long.
local function with_entry(history, status, note)
    local entry = ARGV[2] .. "," .. status .. (note and ("," .. note) or "")
    history = history == "" and entry or (history .. ";" .. entry)
    if #history > HISTORY_KEPT then
        local cut = string.find(history, ";", #history - HISTORY_KEPT, true)
        if cut then history = string.sub(history, cut + 1) end
    end
    return history
end

local function add_history(r, status, note) r[HISTORY] = with_entry(r[HISTORY], status, note) end

-- Every status change goes through here: the hourly counters (counted by `count`, count_hour or a
-- tally's), the history and the record move together. `note` (optional) says why or by whom, for the
-- history; false: no history entry.
local function change_status(r, status, note, count)
    local before = hour_of(tonumber(r[MODIFIED]))
    if before > now - HOUR_KEPT + HOUR then count(before, r[STATUS], r[ORG], -1) end
    r[STATUS] = status
    r[MODIFIED] = ARGV[2]
    if note ~= false then add_history(r, status, note) end
    count(hour_of(now), status, r[ORG], 1)
end

local function set_status(id, r, status, note)
    change_status(r, status, note, count_hour)
    write_record(id, r)
end

-- The hourly counters' changes of many tasks, added up to be written once each (count_tally).
local function new_tally()
    local tally = {}
    local function count(hour, status, org, change)
        local of_status = tally[status] or {}
        tally[status] = of_status
        local of_org = of_status[org] or {}
        of_status[org] = of_org
        of_org[hour] = (of_org[hour] or 0) + change
    end
    return tally, count
end

-- Whether a served organisation keeps its turn: one of weight w is served w times in a row per turn.
local weighted -- whether any organisation has a weight: read once per call (most queues have none)
local function turn_goes_on(org)
    if weighted == nil then weighted = redis.call("EXISTS", P .. ":weights") == 1 end
    if not weighted then return false end
    local weight = tonumber(redis.call("HGET", P .. ":weights", org) or "1")
    if weight <= 1 then return false end
    if redis.call("HINCRBY", P .. ":credit", org, "1") < weight then return true end
    redis.call("HDEL", P .. ":credit", org)
    return false
end

-- Put an organisation in its place in the serving order after its queue changed. An organisation
-- whose head task is manual is in band 0, before all others; a served organisation goes to the back
-- of its band (once its weight's claims in a row are taken); the others keep their turn.
-- Returns its place (its score in P:orgs), nil when it has nothing queued and left the order.
local function place_org(org, served)
    local head = redis.call("ZRANGE", org_key(org), "0", "0", "WITHSCORES")
    if #head == 0 then
        redis.call("ZREM", P .. ":orgs", org)
        redis.call("HDEL", P .. ":credit", org)
        return nil
    end
    if served and turn_goes_on(org) then served = false end
    local band = 1
    if tonumber(head[2]) < 0 then band = 0 end
    local turn = nil
    if not served then
        local current = redis.call("ZSCORE", P .. ":orgs", org)
        if current then
            turn = tonumber(current) % BAND
            if tonumber(current) - turn == band * BAND then return tonumber(current) end -- in its place already
        end
    end
    turn = turn or redis.call("INCR", P .. ":turn")
    redis.call("ZADD", P .. ":orgs", int(band * BAND + turn), org)
    return band * BAND + turn
end

local function wake(reason) redis.call("PUBLISH", P .. ":wake", reason) end

-- A claimed task leaves the dispatcher's slots (if it held one); a freed slot wakes the dispatchers.
local function free_slot(id)
    if redis.call("SREM", P .. ":slots", id) == 1 then wake("slot") end
end

local function count_queued(org, change)
    if redis.call("HINCRBY", P .. ":counts", org, int(change)) <= 0 then redis.call("HDEL", P .. ":counts", org) end
end

-- The plugin index keeps every queued task in P:qp:<org>:<plugin> as well as in P:q:<org>, so that a
-- claim for some plugins finds their tasks wherever they stand in the queue.
local function index_plugin(org, plugin, rank, member)
    redis.call("ZADD", plugin_key(org, plugin), rank, member)
    redis.call("SADD", plugin_orgs_key(plugin), org)
    redis.call("SADD", org_plugins_key(org), plugin)
end

local function unindex_plugin(org, plugin, member)
    local key = plugin_key(org, plugin)
    redis.call("ZREM", key, member)
    if redis.call("EXISTS", key) == 0 then
        redis.call("SREM", plugin_orgs_key(plugin), org)
        redis.call("SREM", org_plugins_key(org), plugin)
    end
end

-- The other members of a task's group of siblings whose status is one of `statuses`: {{id, record}, ...}.
local function group_members(id, statuses)
    local key = redis.call("HGET", P .. ":dkof", id)
    if not key then return {} end
    local found = {}
    for _, sibling in ipairs(redis.call("SMEMBERS", P .. ":dk:" .. key)) do
        local r = sibling ~= id and read_record(sibling)
        if r and statuses[r[STATUS]] then found[#found + 1] = {sibling, r} end
    end
    return found
end

local QUEUED = {queued = true}
local CLAIMED = {dispatched = true, running = true}

-- A task that ended leaves its group of siblings.
local function ungroup(id)
    local key = redis.call("HGET", P .. ":dkof", id)
    if key then
        redis.call("HDEL", P .. ":dkof", id)
        redis.call("SREM", P .. ":dk:" .. key, id)
    end
end

-- A rate counts task starts: a claimed task counts as starting now until it starts (see running), at
-- `at` (ms; the runner's word, when it says when) or now.
local function started(id, r, at)
    if redis.call("SREM", unstarted_key(r[PLUGIN]), id) == 1 then
        local moment = math.min(tonumber(at) or now, now)
        redis.call("ZADD", starts_key(r[PLUGIN]), int(moment), id .. ":" .. int(moment))
    end
end

-- A claimed task ended (`ended`: it ran, if it never said it started) or went back: it no longer counts
-- against its plugin's concurrency limit, and a dispatcher held by that limit may claim again.
local function leave_busy(id, r, ended)
    if ended then started(id, r, nil) else redis.call("SREM", unstarted_key(r[PLUGIN]), id) end
    if redis.call("SREM", busy_key(r[PLUGIN]), id) == 1 then wake("limit") end
end

-- Queue a record again (released, reaped or requeued from the dead letters).
local function enqueue(id, r)
    redis.call("ZADD", org_key(r[ORG]), r[PRIO], member_of(r[SEQ], id))
    redis.call("ZADD", waiting_key(r[ORG]), "0", member_of(r[SEQ], id))
    index_plugin(r[ORG], r[PLUGIN], r[PRIO], member_of(r[SEQ], id))
    count_queued(r[ORG], 1)
    place_org(r[ORG], false)
end

-- Take a queued record out of its organisation's queue.
local function dequeue(id, r, served)
    redis.call("ZREM", org_key(r[ORG]), member_of(r[SEQ], id))
    redis.call("ZREM", waiting_key(r[ORG]), member_of(r[SEQ], id))
    unindex_plugin(r[ORG], r[PLUGIN], member_of(r[SEQ], id))
    count_queued(r[ORG], -1)
    return place_org(r[ORG], served)
end

local function release_identity(id, r)
    local group = group_key(r[ORG], r[OOI])
    if redis.call("HGET", group, r[HASH]) == id then redis.call("HDEL", group, r[HASH]) end
end

-- A command with many arguments after the key (or no key: MGET, MSET), sent in slices of 4,000 that stay
-- within Lua's stack and keep pairs together. Replies the replies, joined. (unpack is Lua 5.1's, as in
-- Redis; table.unpack Lua 5.4's, as in fakeredis.)
local function call_in_slices(command, key, args)
    local replies = {}
    for start = 1, #args, 4000 do
        local last = math.min(start + 3999, #args)
        local reply
        if key then
            reply = redis.call(command, key, (unpack or table.unpack)(args, start, last))
        else
            reply = redis.call(command, (unpack or table.unpack)(args, start, last))
        end
        if type(reply) == "table" then
            for n = 1, #reply do replies[#replies + 1] = reply[n] end
        end
    end
    return replies
end

-- Add score/member pairs to a sorted set.
local function zadd_all(key, pairs) call_in_slices("ZADD", key, pairs) end

-- Add the members a push collected per organisation (and per plugin, in adds.by_plugin), then count
-- them and place the organisations.
local function flush_org_adds(by_org)
    for org, adds in pairs(by_org) do
        zadd_all(org_key(org), adds)
        zadd_all(waiting_key(org), adds.waiting)
        for plugin, pairs_of_plugin in pairs(adds.by_plugin) do
            zadd_all(plugin_key(org, plugin), pairs_of_plugin)
            redis.call("SADD", plugin_orgs_key(plugin), org)
            redis.call("SADD", org_plugins_key(org), plugin)
        end
        count_queued(org, adds.n)
        count_hour(hour_of(now), "queued", org, adds.n)
        -- A waiting organisation keeps its turn, and its band unless a manual task came in.
        local current = redis.call("ZSCORE", P .. ":orgs", org)
        if not current or (adds.manual and tonumber(current) >= BAND) then place_org(org, false) end
        by_org[org] = nil
    end
end

-- A pushed item: capture the id, then "queued", then capture the whole record (after the id) and in it
-- score, seq, (attempts, created, modified,) organisation, hash, OOI and plugin; schedule, reason and
-- payload follow.
local PUSHED_ITEM = "^" .. FIELD .. "(queued" .. SEP .. FIELD .. FIELD .. SKIP .. SKIP .. SKIP .. FIELD .. FIELD ..
    FIELD .. FIELD .. ".*)$"

-- push: ARGV[3] the options "<max size, 0 = none>:<1 lets manual items exceed it>:<1 lets a push
-- re-prioritise a queued task of the same identity>", then one argument per item: the id and the
-- record, joined by SEP, as the caller built them.
-- Replies only the items that were not simply queued, as {position, outcome, ...}; an outcome is
-- "updated:<id>", "duplicate:<id>:<status>", "full" or "id_taken".
local function push()
    local maxsize, overflow, update = string.match(ARGV[3], "^(%d+):([01]):([01])$")
    if not maxsize then return redis.error_reply("push: options come as <max size>:<0|1>:<0|1>") end
    maxsize = tonumber(maxsize)
    local manual_may_overflow, may_update = overflow == "1", update == "1"
    local items = {}
    for n = 4, #ARGV do
        local position = n - 3
        local id, record, score, seq, org, hash, ooi, plugin = string.match(ARGV[n], PUSHED_ITEM)
        if not id then return redis.error_reply("push: item " .. position .. " is not an id and a record") end
        if id == "" or org == "" or hash == "" or plugin == "" or #seq ~= 16 then
            return redis.error_reply("push: item " .. position .. " lacks an id, seq, organisation, hash or plugin")
        end
        if not tonumber(score) then
            return redis.error_reply("push: item " .. position .. " has a score that is not a number")
        end
        items[position] = {id, record, score, org, hash, ooi, member_of(seq, id), plugin}
    end
    local size = 0
    if maxsize > 0 then
        for _, count in ipairs(redis.call("HVALS", P .. ":counts")) do size = size + tonumber(count) end
    end
    if redis.call("EXISTS", P .. ":orgs") == 0 then
        -- Nothing is queued, so nothing lacks an index: a queue filled from here on never needs the walk
        -- of ensure_wait_index or ensure_plugin_index over all its tasks (a stall of Redis, once).
        redis.call("MSET", P .. ":wait_index", "1", P .. ":plugin_index", "2")
    end
    local added, by_org, created_by_org, replies = 0, {}, {}, {}
    for position, item in ipairs(items) do
        local id, record, score, org, hash, ooi, member = item[1], item[2], item[3], item[4], item[5], item[6], item[7]
        local plugin = item[8]
        local group = group_key(org, ooi)
        local outcome = nil
        if maxsize > 0 and size >= maxsize and not (manual_may_overflow and tonumber(score) < 0) then
            if redis.call("HEXISTS", group, hash) == 0 then outcome = "full" end
        end
        if outcome then
            -- refused for size
        elseif redis.call("HSETNX", group, hash, id) == 0 then
            local holder = redis.call("HGET", group, hash)
            local r = read_record(holder)
            local status = r and r[STATUS] or "unknown"
            if may_update and status == "queued" then
                -- a holder pushed earlier in this batch is still in by_org: ZADD it first
                flush_org_adds(by_org)
                redis.call("ZADD", org_key(org), score, member_of(r[SEQ], holder))
                redis.call("ZADD", plugin_key(org, r[PLUGIN]), score, member_of(r[SEQ], holder))
                r[PRIO] = score
                set_status(holder, r, "queued", "priority changed")
                outcome = "updated:" .. holder
            else
                outcome = "duplicate:" .. holder .. ":" .. status
            end
        elseif not redis.call("SET", record_key(id), record, "NX") then
            redis.call("HDEL", group, hash)
            outcome = "id_taken"
        else
            local adds = by_org[org] or {n = 0, by_plugin = {}, waiting = {}}
            adds[#adds + 1] = score
            adds[#adds + 1] = member
            adds.waiting[#adds.waiting + 1] = "0"
            adds.waiting[#adds.waiting + 1] = member
            adds.n = adds.n + 1
            local of_plugin = adds.by_plugin[plugin] or {}
            of_plugin[#of_plugin + 1] = score
            of_plugin[#of_plugin + 1] = member
            adds.by_plugin[plugin] = of_plugin
            if tonumber(score) < 0 then adds.manual = true end
            by_org[org] = adds
            local created = created_by_org[org] or {}
            created[#created + 1] = ARGV[2]
            created[#created + 1] = id
            created_by_org[org] = created
            added = added + 1
            size = size + 1
        end
        if outcome then
            replies[#replies + 1] = position
            replies[#replies + 1] = outcome
        end
    end
    flush_org_adds(by_org)
    if added > 0 then
        for org, created in pairs(created_by_org) do
            zadd_all(P .. ":h:" .. org, created)
            redis.call("SADD", P .. ":h", org)
        end
        wake("push")
    end
    return replies
end

local ensure_plugin_index -- defined below, with the claims

-- Plugin limits. A claim asks the gate before it takes a task of a limited plugin: the plugin's room is
-- its concurrency limit minus its busy tasks, and its rate count minus its starts in the last window and
-- its claimed tasks that have yet to start, whichever is less. (Counting starts, not claims, keeps every
-- window of the runners' starts within the count however long a dispatch takes.) The gate reads each
-- plugin's limit and room once per call and counts down what the call takes; a plugin without room is
-- held for the rest of the call, and its tasks stay where they are.
-- A start is written when a dispatcher hears of it, a little after the runner began: a rate's window
-- counts a twentieth longer, so that no window of the runners' own clocks holds more.
local function counted_window(window_ms) return tonumber(window_ms) * 21 / 20 end

local function new_gate()
    if redis.call("EXISTS", P .. ":limits") == 0 then return nil end
    ensure_plugin_index()
    return {room = {}, opens_at = nil}
end

-- A plugin's room: {tasks it may still take in this call, whether it is limited, its rate count, its
-- rate window}.
local function room_of(gate, plugin)
    local room = gate.room[plugin]
    if room then return room end
    local limit = redis.call("HGET", P .. ":limits", plugin)
    if not limit then
        room = {math.huge, false, 0, 0}
    else
        local concurrency, count, window = string.match(limit, "^(%d+):(%d+):(%d+)$")
        concurrency, count, window = tonumber(concurrency), tonumber(count), counted_window(window)
        local left = math.huge
        if concurrency > 0 then left = concurrency - redis.call("SCARD", busy_key(plugin)) end
        if count > 0 then
            redis.call("ZREMRANGEBYSCORE", starts_key(plugin), "-inf", int(now - window))
            left = math.min(left, count - redis.call("ZCARD", starts_key(plugin)) -
                redis.call("SCARD", unstarted_key(plugin)))
        end
        room = {math.max(left, 0), true, count, window}
    end
    gate.room[plugin] = room
    return room
end

-- Whether the gate lets a task of `plugin` go now. A plugin its rate holds notes when the oldest start
-- of its window leaves it (gate.opens_at: the dispatcher waits no longer than that).
local function allows(gate, plugin)
    if not gate then return true end
    local room = room_of(gate, plugin)
    if room[1] > 0 then return true end
    if room[3] > 0 and not room.noted then
        room.noted = true
        local oldest = redis.call("ZRANGE", starts_key(plugin), "0", "0", "WITHSCORES")
        if #oldest > 0 and redis.call("ZCARD", starts_key(plugin)) +
                redis.call("SCARD", unstarted_key(plugin)) >= room[3] then
            local opens = tonumber(oldest[2]) + room[4]
            if not gate.opens_at or opens < gate.opens_at then gate.opens_at = opens end
        end
    end
    return false
end

-- The gate lets a task of `plugin` go: count it against the plugin's limits.
local function admit(gate, plugin, id)
    if not gate then return end
    local room = room_of(gate, plugin)
    if not room[2] then return end
    room[1] = room[1] - 1
    redis.call("SADD", busy_key(plugin), id)
    if room[3] > 0 then redis.call("SADD", unstarted_key(plugin), id) end
end

-- The organisations a filtered claim (a list of plugin ids) may serve, in serving order: those in
-- P:orgs with queued tasks of one of the plugins, found with one ZINTER per plugin when the call starts.
-- Only the organisation just served changes its place while the call runs, so the claim keeps the
-- list itself and moves that one organisation (served), rather than asking Redis again per task. The
-- list is orgs[orgs.first .. orgs.last], each {organisation, place}: the first leaves it without moving
-- the others, and a served organisation mostly goes to the back.
local function filtered_orgs(filter)
    local turn_of = {}
    for _, plugin in ipairs(filter) do
        local found = redis.call("ZINTER", "2", P .. ":orgs", plugin_orgs_key(plugin), "WEIGHTS", "1", "0",
            "WITHSCORES")
        for n = 1, #found, 2 do turn_of[found[n]] = tonumber(found[n + 1]) end
    end
    local sorted = {}
    for org, turn in pairs(turn_of) do sorted[#sorted + 1] = {org, turn} end
    table.sort(sorted, function(a, b) return a[2] < b[2] end)
    local orgs = {first = 1, last = #sorted}
    for n, entry in ipairs(sorted) do orgs[n] = entry end
    return orgs
end

-- The first organisation of the list (nil when it is empty), and taking it off.
local function first_org(orgs)
    local entry = orgs[orgs.first]
    return entry and entry[1]
end

local function drop_first_org(orgs)
    orgs[orgs.first] = nil
    orgs.first = orgs.first + 1
end

-- The first organisation of `orgs` was served and is now at `turn` in serving order (nil: it left it):
-- move it there in `orgs` too (or drop it).
local function served(orgs, turn)
    local entry = orgs[orgs.first]
    drop_first_org(orgs)
    if not turn then return end
    entry[2] = turn
    local at = orgs.last + 1
    while at > orgs.first and orgs[at - 1][2] > turn do
        orgs[at] = orgs[at - 1]
        at = at - 1
    end
    orgs[at] = entry
    orgs.last = orgs.last + 1
end

-- The best queued task of `plugins` (those the gate allows) in one organisation, or nil.
local function best_of_plugins(org, plugins, gate)
    local best_member, best_rank = nil, nil
    for _, plugin in ipairs(plugins) do
        if allows(gate, plugin) then
            local head = redis.call("ZRANGE", plugin_key(org, plugin), "0", "0", "WITHSCORES")
            if #head > 0 then
                local rank = tonumber(head[2])
                if not best_rank or rank < best_rank or (rank == best_rank and head[1] < best_member) then
                    best_member, best_rank = head[1], rank
                end
            end
        end
    end
    return best_member
end

-- The first organisation in serving order that this call has not found all held by limits.
local function first_unheld_org(held)
    local seen = 0
    while true do
        local next_orgs = redis.call("ZRANGE", P .. ":orgs", int(seen), int(seen + 9))
        if #next_orgs == 0 then return nil end
        for _, org in ipairs(next_orgs) do
            if not held[org] then return org end
        end
        seen = seen + #next_orgs
    end
end

-- Find the next task for a claim. Without a filter or limits: the best task of the organisation whose
-- turn it is, popped off its queue (the second reply is true). With limits: that organisation's best
-- task the gate allows, found through its plugins' indexes when the head is held (still queued); an
-- organisation with nothing allowed is passed over for the rest of the call and keeps its turn. With a
-- plugin filter: the best task of those plugins of the first organisation in `orgs` that has one.
local function next_candidate(filter, orgs, gate, held)
    if not filter then
        if not gate then
            local first = redis.call("ZRANGE", P .. ":orgs", "0", "0")
            if #first == 0 then return nil end
            return redis.call("ZPOPMIN", org_key(first[1]))[1], true -- taken off its queue already
        end
        while true do
            local org = first_unheld_org(held)
            if not org then return nil end
            local head = redis.call("ZRANGE", org_key(org), "0", "0")[1]
            local r = head and read_record(id_of(head))
            if r and allows(gate, r[PLUGIN]) then return head, false, r end
            local member = best_of_plugins(org, redis.call("SMEMBERS", org_plugins_key(org)), gate)
            if member then return member, false end
            held[org] = true
        end
    end
    while first_org(orgs) do
        local member = best_of_plugins(first_org(orgs), filter, gate)
        if member then return member, false end
        drop_first_org(orgs) -- none of its tasks are of these plugins (that the gate allows) any more
    end
    return nil
end

-- The queued siblings of a task just claimed (the same work for other organisations) are claimed with
-- it, leased but in no slot: one run does the work of them all. Their reply entries' ids carry a "+".
local function take_siblings(id, lease, claimed)
    local siblings = group_members(id, QUEUED)
    for _, sibling in ipairs(siblings) do
        local r = sibling[2]
        dequeue(sibling[1], r, false)
        r[ATTEMPTS] = int(tonumber(r[ATTEMPTS]) + 1)
        set_status(sibling[1], r, "dispatched", "with " .. id)
        redis.call("ZADD", P .. ":leases", int(now + lease), sibling[1])
        claimed[#claimed + 1] = "+" .. sibling[1]
        claimed[#claimed + 1] = table.concat(r, SEP)
    end
    return #siblings
end

-- Take up to `wanted` tasks in serving order: each is dispatched, leased and (for the dispatcher) in a
-- slot, and its queued siblings with it. Replies as claim (the tail's "more" is the caller's to set).
local function take(wanted, lease, filter, in_slot)
    local claimed = {"0:"}
    local gate = new_gate()
    local orgs = filter and filtered_orgs(filter)
    local held = {}
    local grouped = redis.call("EXISTS", P .. ":dkof") == 1
    local leaders, siblings = 0, 0
    while leaders < wanted do
        local member, popped, r = next_candidate(filter, orgs, gate, held)
        if not member then break end
        local id = id_of(member)
        r = r or read_record(id)
        if popped then
            redis.call("ZREM", waiting_key(r[ORG]), member)
            unindex_plugin(r[ORG], r[PLUGIN], member)
            count_queued(r[ORG], -1)
            place_org(r[ORG], true)
        else
            local turn = dequeue(id, r, true)
            if filter then served(orgs, turn) end
        end
        admit(gate, r[PLUGIN], id)
        r[ATTEMPTS] = int(tonumber(r[ATTEMPTS]) + 1)
        set_status(id, r, "dispatched", in_slot and "forwarded" or "pulled")
        redis.call("ZADD", P .. ":leases", int(now + lease), id)
        if in_slot then redis.call("SADD", P .. ":slots", id) end
        claimed[#claimed + 1] = id
        claimed[#claimed + 1] = table.concat(r, SEP)
        leaders = leaders + 1
        if grouped then siblings = siblings + take_siblings(id, lease, claimed) end
    end
    local taken = leaders + siblings
    if taken > 0 then redis.call("HINCRBY", P .. ":stats", in_slot and "dispatched" or "claimed", int(taken)) end
    if gate and leaders < wanted then
        for plugin in pairs(gate.room) do allows(gate, plugin) end -- note when the held ones open
        if gate.opens_at then claimed[1] = "0:" .. int(gate.opens_at) end
    end
    return claimed, leaders
end

-- Add a tally's changes to the hourly counters.
local function count_tally(tally)
    for status, of_status in pairs(tally) do
        for org, of_org in pairs(of_status) do
            for hour, change in pairs(of_org) do
                if change ~= 0 then count_hour(hour, status, org, change) end
            end
        end
    end
end

-- A filtered claim in bulk. With no plugin limits, siblings or weights in play, what a claim takes
-- depends only on the queues as they stand: so it makes every choice first, reading the organisations'
-- queues and plugin indexes a page at a time, and then writes once per organisation and once per call
-- what take() writes once per task (a call of 1,000 costs Redis less than half of ten calls of 100). It takes
-- the same tasks in the same order as take(), and leaves the same queue behind; a test holds it to that.

-- A sorted set read a page at a time as a claim goes on: nothing is written until the choices are
-- made, so each page continues where the last one ended. Pages double, from `size`; `scored`: with
-- the scores (each costs Redis a number formatted, and the script one parsed).
local function new_pages(key, size, scored)
    return {key = key, size = size, scored = scored, items = {}, read = 0, done = false}
end

-- The n-th member of the pages and its score (a number; nil when not scored), nil past the end.
local function page_item(pages, n)
    local width = pages.scored and 2 or 1
    while n > pages.read and not pages.done do
        local first, last = int(pages.read), int(pages.read + pages.size - 1)
        local got = pages.scored and redis.call("ZRANGE", pages.key, first, last, "WITHSCORES") or
            redis.call("ZRANGE", pages.key, first, last)
        local items, at = pages.items, #pages.items
        for i = 1, #got do items[at + i] = got[i] end
        pages.read = pages.read + #got / width
        pages.done = #got / width < pages.size
        pages.size = pages.size * 2
    end
    if n > pages.read then return nil end
    if not pages.scored then return pages.items[n], nil end
    return pages.items[2 * n - 1], tonumber(pages.items[2 * n])
end

-- What a bulk claim knows of one organisation: its queue from the head (for its band once tasks are
-- taken), each filtered plugin's index, and what it took.
local function bulk_org(org, filter, page)
    local state = {queue = new_pages(org_key(org), 2, true), head = 1, taken = {}, members = {}, plugins = {}}
    for _, plugin in ipairs(filter) do -- scores only when tasks of several plugins are compared
        state.plugins[plugin] = {pages = new_pages(plugin_key(org, plugin), page, #filter > 1), next = 1, members = {}}
    end
    return state
end

-- The organisation's best task of the filtered plugins that this call has not taken yet (as
-- best_of_plugins: the lowest rank, then the lowest member), marked taken; nil when none is left.
local function bulk_best(state, filter)
    local best, best_member, best_rank = nil, nil, nil
    for n = 1, #filter do -- (numeric loops: ipairs is a C call per step, on every task)
        local index = state.plugins[filter[n]]
        local member, rank = page_item(index.pages, index.next)
        if member and (not best or rank < best_rank or (rank == best_rank and member < best_member)) then
            best, best_member, best_rank = index, member, rank
        end
    end
    if not best then return nil end
    best.next = best.next + 1
    best.members[#best.members + 1] = best_member
    state.taken[best_member] = true
    state.members[#state.members + 1] = best_member
    return best_member
end

-- The organisation's band once its taken tasks are gone (place_org's), nil when its queue is empty then.
-- (Kept while its head stays: most claims take tasks from behind it.)
local function bulk_band(state)
    local member = state.head_member
    if member and not state.taken[member] then return state.band end
    while true do
        local rank
        member, rank = page_item(state.queue, state.head)
        if not member then return nil end
        if not state.taken[member] then
            state.head_member, state.band = member, rank < 0 and 0 or 1
            return state.band
        end
        state.head = state.head + 1
    end
end

-- Write what a bulk claim chose to the queues: the organisations' queues, indexes, counts and places.
local function bulk_dequeue(states, places, turn)
    for org, state in pairs(states) do
        if #state.members > 0 then
            call_in_slices("ZREM", org_key(org), state.members)
            call_in_slices("ZREM", waiting_key(org), state.members)
            for plugin, index in pairs(state.plugins) do
                if #index.members > 0 then
                    call_in_slices("ZREM", plugin_key(org, plugin), index.members)
                    if index.pages.done and #index.members == index.pages.read then -- it took them all
                        redis.call("SREM", plugin_orgs_key(plugin), org)
                        redis.call("SREM", org_plugins_key(org), plugin)
                    end
                end
            end
            count_queued(org, -#state.members)
        end
    end
    local placed, gone = {}, {}
    for org, place in pairs(places) do
        if place then
            placed[#placed + 1] = int(place)
            placed[#placed + 1] = org
        else
            gone[#gone + 1] = org
        end
    end
    call_in_slices("ZADD", P .. ":orgs", placed)
    call_in_slices("ZREM", P .. ":orgs", gone)
    if turn then redis.call("SET", P .. ":turn", int(turn)) end
end

-- A claimed record, rewritten as change_status would (status, attempts, modified, history), its hourly
-- counts tallied. Made in one concatenation, with what every record of the call shares made once
-- (`shared`): each string a script makes is hashed, stored and later collected.
local function claimed_record(raw, org, shared)
    local prio_seq, attempts, created, modified, org_to_expired, history, data = string.match(raw, CLAIMED_RECORD)
    if not prio_seq then -- a record written before HISTORY existed
        local r = parse_record(raw)
        r[ATTEMPTS] = int(tonumber(r[ATTEMPTS]) + 1)
        change_status(r, "dispatched", "pulled", shared.count)
        return table.concat(r, SEP)
    end
    local before = hour_of(tonumber(modified))
    if before > now - HOUR_KEPT + HOUR then shared.count(before, "queued", org, -1) end
    shared.count(shared.hour, "dispatched", org, 1)
    local attempt = shared.attempts[attempts]
    if not attempt then
        attempt = int(tonumber(attempts) + 1)
        shared.attempts[attempts] = attempt
    end
    if #history + 1 + #shared.entry > HISTORY_KEPT then -- the oldest entries go (with_entry)
        return "dispatched" .. SEP .. prio_seq .. attempt .. SEP .. created .. ARGV[2] .. SEP .. org_to_expired ..
            with_entry(history, "dispatched", "pulled") .. SEP .. data
    end
    local joint = history == "" and "" or ";" -- with_entry's join, in the one concatenation
    return "dispatched" .. SEP .. prio_seq .. attempt .. SEP .. created .. ARGV[2] .. SEP .. org_to_expired ..
        history .. joint .. shared.entry .. SEP .. data
end

-- Write the records a bulk claim took, their hourly counters and leases. Replies as claim.
local function bulk_lease(chosen, chosen_orgs, lease)
    local keys, ids = {}, {}
    for n = 1, #chosen do
        ids[n] = id_of(chosen[n])
        keys[n] = record_key(ids[n])
    end
    local raws = call_in_slices("MGET", nil, keys)
    local tally, count = new_tally()
    local shared = {count = count, hour = hour_of(now), attempts = {}, entry = ARGV[2] .. ",dispatched,pulled"}
    local claimed, written, leases, deadline, leased = {"0:"}, {}, {}, int(now + lease), 0
    for n = 1, #raws do
        local raw = raws[n]
        if raw then
            local record = claimed_record(raw, chosen_orgs[n], shared)
            written[2 * leased + 1], written[2 * leased + 2] = keys[n], record
            leases[2 * leased + 1], leases[2 * leased + 2] = deadline, ids[n]
            claimed[2 * leased + 2], claimed[2 * leased + 3] = ids[n], record
            leased = leased + 1
        end
    end
    call_in_slices("MSET", nil, written)
    count_tally(tally)
    zadd_all(P .. ":leases", leases)
    if leased > 0 then redis.call("HINCRBY", P .. ":stats", "claimed", int(leased)) end
    return claimed
end

local function take_in_bulk(wanted, lease, filter)
    local orgs = filtered_orgs(filter)
    local page = math.ceil(wanted / math.max(orgs.last, 1)) + 1 -- about what each organisation gives
    local states, places, chosen, chosen_orgs = {}, {}, {}, {}
    local turn = tonumber(redis.call("GET", P .. ":turn") or "0")
    local first_turn, taken = turn, 0
    while taken < wanted and first_org(orgs) do
        local org = first_org(orgs)
        local state = states[org]
        if not state then
            state = bulk_org(org, filter, page)
            states[org] = state
        end
        local member = bulk_best(state, filter)
        if not member then
            drop_first_org(orgs) -- none of its tasks are of these plugins any more
        else
            taken = taken + 1
            chosen[taken], chosen_orgs[taken] = member, org
            local band, place = bulk_band(state), false
            if band then
                turn = turn + 1
                place = band * BAND + turn
            end
            places[org] = place
            served(orgs, place or nil)
        end
    end
    bulk_dequeue(states, places, turn ~= first_turn and turn)
    return bulk_lease(chosen, chosen_orgs, lease)
end

-- Index every queued task by plugin, once per queue: a queue written before the plugin index (or its
-- P:op:<org> part) existed gets it at its first filtered or limited claim (P:plugin_index "2" marks it
-- done; writes keep it up to date).
ensure_plugin_index = function()
    if redis.call("GET", P .. ":plugin_index") == "2" then return end
    redis.call("SET", P .. ":plugin_index", "2")
    for _, org in ipairs(redis.call("ZRANGE", P .. ":orgs", "0", "-1")) do
        local members = redis.call("ZRANGE", org_key(org), "0", "-1", "WITHSCORES")
        for n = 1, #members, 2 do
            local r = read_record(id_of(members[n]))
            if r then index_plugin(org, r[PLUGIN], members[n + 1], members[n]) end
        end
    end
end

-- Index every queued task by seq, once per queue: a queue written before P:w:<org> existed gets it at its
-- first reap (P:wait_index marks it done; writes keep it up to date).
local function ensure_wait_index()
    if redis.call("SETNX", P .. ":wait_index", "1") == 0 then return end
    for _, org in ipairs(redis.call("ZRANGE", P .. ":orgs", "0", "-1")) do
        local members = redis.call("ZRANGE", org_key(org), "0", "-1")
        local pairs_of_org = {}
        for n = 1, #members do
            pairs_of_org[#pairs_of_org + 1] = "0"
            pairs_of_org[#pairs_of_org + 1] = members[n]
        end
        zadd_all(waiting_key(org), pairs_of_org)
    end
end

-- claim: ARGV[3] how many, ARGV[4] lease in ms, ARGV[5..] plugin ids to limit the claim to (none: any
-- plugin). Replies {tail, id, record, id, record, ...}: the tail is "<more>:<opens>", more "1" when the
-- call stopped at its bound (ONE_BY_ONE) with more wanted and maybe more to take, opens (or nothing) the
-- moment (ms) a rate limit that held a task back opens again. A filtered claim with no limits,
-- siblings or weights in play is taken in bulk, as many as asked in one call.
local function claim()
    local wanted, lease = tonumber(ARGV[3]), tonumber(ARGV[4])
    local filter = nil
    if #ARGV > 4 then
        ensure_plugin_index()
        filter = {}
        for i = 5, #ARGV do filter[#filter + 1] = ARGV[i] end
        if redis.call("EXISTS", P .. ":limits", P .. ":dkof", P .. ":weights") == 0 then
            return take_in_bulk(wanted, lease, filter)
        end
    end
    local claimed, leaders = take(math.min(wanted, ONE_BY_ONE), lease, filter, false)
    if wanted > ONE_BY_ONE and leaders == ONE_BY_ONE then claimed[1] = "1" .. string.sub(claimed[1], 2) end
    return claimed
end

-- dispatch: ARGV[3] how many, ARGV[4] lease in ms, ARGV[5] runner slots. A claim for the dispatcher:
-- it takes no more than the slots left free (slots minus P:slots) and puts what it takes in P:slots,
-- so any number of dispatchers together never exceed the slots. Replies as claim.
local function dispatch()
    local wanted, lease, slots = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
    local free = slots - redis.call("SCARD", P .. ":slots")
    if free < wanted then wanted = free end
    if wanted <= 0 then return {"0:"} end
    return (take(wanted, lease, nil, true))
end

-- The siblings claimed with a task (dispatched or running): its run is theirs, so what happens to it
-- happens to them (running, completed; failed or handed back: they go back to the queue, for another run).
local function claimed_siblings(id)
    return group_members(id, CLAIMED)
end

-- Checks shared by the operations on a claimed task: it exists, is dispatched or running, and
-- (when the caller gives one) its attempt number matches the caller's claim.
local function claimed_record(id, attempt)
    local r = read_record(id)
    if not r then return nil, "unknown" end
    if r[STATUS] ~= "dispatched" and r[STATUS] ~= "running" then return nil, r[STATUS] end
    if attempt ~= "" and attempt ~= r[ATTEMPTS] then return nil, "stale" end
    return r, nil
end

-- Give a claimed task back to its queue with its rank and its place among equals.
local function requeue(id, r, note)
    redis.call("ZREM", P .. ":leases", id)
    leave_busy(id, r, false)
    set_status(id, r, "queued", note)
    enqueue(id, r)
    redis.call("SREM", P .. ":slots", id)
    wake("requeue")
end

-- End a task: final status, identity free, record kept for the retention period.
local function finish(id, r, status, retention_ms)
    ungroup(id)
    redis.call("ZREM", P .. ":leases", id)
    free_slot(id)
    leave_busy(id, r, true)
    set_status(id, r, status)
    release_identity(id, r)
    redis.call("PEXPIRE", record_key(id), retention_ms)
end

-- ack: ARGV[3] id, ARGV[4] "completed" | "failed", ARGV[5] attempt ("" = any), ARGV[6] retention ms,
-- ARGV[7] "1" to record the end of the run in P:lastrun.
-- Without an attempt, a queued task that was handed out before may be acked too: its runner worked on
-- past its lease and the task went back to the queue meanwhile; the outcome it reports stands, and the
-- queued copy is not run again.
local function ack()
    local status = ARGV[4]
    if status ~= "completed" and status ~= "failed" then return redis.error_reply("ack: bad status") end
    local r, problem = claimed_record(ARGV[3], ARGV[5])
    if not r and problem == "queued" and ARGV[5] == "" then
        r = read_record(ARGV[3])
        if r[ATTEMPTS] == "0" then return problem end -- never handed out: nobody worked on it
        dequeue(ARGV[3], r, false)
    elseif not r then
        return problem
    end
    local siblings = claimed_siblings(ARGV[3])
    finish(ARGV[3], r, status, ARGV[6])
    if ARGV[7] == "1" then redis.call("HSET", P .. ":lastrun", r[HASH], ARGV[2]) end
    redis.call("HINCRBY", P .. ":stats", status, "1")
    for _, sibling in ipairs(siblings) do
        if status == "completed" then
            finish(sibling[1], sibling[2], status, ARGV[6])
            if ARGV[7] == "1" then redis.call("HSET", P .. ":lastrun", sibling[2][HASH], ARGV[2]) end
            redis.call("HINCRBY", P .. ":stats", status, "1")
        else
            requeue(sibling[1], sibling[2], "its run failed")
        end
    end
    return "ok"
end

-- running: ARGV[3] id, ARGV[4] attempt, ARGV[5] a new lease in ms ("" keeps the lease), ARGV[6] when it
-- started, ms ("" now), ARGV[7] the runner ("" unknown). A dispatched task has started, or a running one
-- says it still runs (its history notes only the start).
local function running()
    local r, problem = claimed_record(ARGV[3], ARGV[4])
    if not r then return problem end
    local runner = ARGV[7] ~= "" and ARGV[7] or nil
    local note = false -- a task that still runs adds nothing to its history
    if r[STATUS] == "dispatched" then
        started(ARGV[3], r, ARGV[6])
        note = runner
    end
    set_status(ARGV[3], r, "running", note)
    if ARGV[5] ~= "" then redis.call("ZADD", P .. ":leases", int(now + tonumber(ARGV[5])), ARGV[3]) end
    for _, sibling in ipairs(claimed_siblings(ARGV[3])) do
        if sibling[2][STATUS] == "dispatched" then set_status(sibling[1], sibling[2], "running", runner) end
        if ARGV[5] ~= "" then redis.call("ZADD", P .. ":leases", int(now + tonumber(ARGV[5])), sibling[1]) end
    end
    return "ok"
end

-- release: ARGV[3] id, ARGV[4] attempt.
local function release()
    local r, problem = claimed_record(ARGV[3], ARGV[4])
    if not r then return problem end
    requeue(ARGV[3], r, "handed back")
    for _, sibling in ipairs(claimed_siblings(ARGV[3])) do requeue(sibling[1], sibling[2], "handed back") end
    return "ok"
end

-- renew: ARGV[3] id, ARGV[4] attempt, ARGV[5] lease in ms.
local function renew()
    local r, problem = claimed_record(ARGV[3], ARGV[4])
    if not r then return problem end
    redis.call("ZADD", P .. ":leases", int(now + tonumber(ARGV[5])), ARGV[3])
    for _, sibling in ipairs(claimed_siblings(ARGV[3])) do
        redis.call("ZADD", P .. ":leases", int(now + tonumber(ARGV[5])), sibling[1])
    end
    return "ok"
end

-- Trim the creation indexes of a few organisations, dropping those that are left empty. Reaps run
-- every second or so, so each index is trimmed every (organisations / 10) seconds or so.
local function forget_old_creations(forgotten)
    for _, org in ipairs(redis.call("SRANDMEMBER", P .. ":h", "10")) do
        redis.call("ZREMRANGEBYSCORE", P .. ":h:" .. org, "-inf", forgotten)
        if redis.call("EXISTS", P .. ":h:" .. org) == 0 then redis.call("SREM", P .. ":h", org) end
    end
end

-- A dead letter leaves the dead letters; its record stays `retention_ms`. False when it was not one.
local function drop_dead_letter(id, retention_ms)
    if redis.call("ZREM", P .. ":dead", id) == 0 then return false end
    redis.call("PEXPIRE", record_key(id), retention_ms)
    return true
end

-- Whether a claimed task went to a Celery runner: it holds a dispatcher slot, or a sibling claimed with
-- it does (the run is the sibling's).
local function forwarded(id)
    if redis.call("SISMEMBER", P .. ":slots", id) == 1 then return true end
    for _, sibling in ipairs(claimed_siblings(id)) do
        if redis.call("SISMEMBER", P .. ":slots", sibling[1]) == 1 then return true end
    end
    return false
end

-- reap: ARGV[3] max expired leases, ARGV[4] how many at most, ARGV[5] retention ms, ARGV[6] how long
-- dead letters are kept, ms (0: until dropped); older ones are dropped, at most ARGV[4] a call. ARGV[7]
-- "1": only tasks in no dispatcher slot (pulled through the API; the dispatchers hear the others' ends).
-- Expired leases go back to the queue, or to the dead letters once a task's lease has run out
-- ARGV[3] times. Replies {requeued ids, dead-lettered ids}.
local function reap()
    ensure_wait_index()
    local max_expired = tonumber(ARGV[3])
    local expired = redis.call("ZRANGEBYSCORE", P .. ":leases", "-inf", ARGV[2], "LIMIT", "0", ARGV[4])
    local requeued, dead = {}, {}
    local pulled_only = ARGV[7] == "1"
    for _, id in ipairs(expired) do
        local r = read_record(id)
        if pulled_only and forwarded(id) then
            -- a dispatcher's: it reaps it, once it has written what it heard
        elseif not r then
            redis.call("ZREM", P .. ":leases", id)
            free_slot(id)
        else
            r[EXPIRED] = int(tonumber(r[EXPIRED]) + 1)
            if tonumber(r[EXPIRED]) >= max_expired then
                redis.call("ZREM", P .. ":leases", id)
                free_slot(id)
                leave_busy(id, r, false)
                ungroup(id)
                r[REASON] = "lease expired " .. r[EXPIRED] .. " times"
                set_status(id, r, "failed", "lease expired")
                release_identity(id, r)
                redis.call("ZADD", P .. ":dead", ARGV[2], id)
                dead[#dead + 1] = id
            else
                requeue(id, r, "lease expired")
                requeued[#requeued + 1] = id
            end
        end
    end
    forget_old_creations(int(now - tonumber(ARGV[5])))
    if tonumber(ARGV[6]) > 0 then
        local old = redis.call("ZRANGEBYSCORE", P .. ":dead", "-inf", int(now - tonumber(ARGV[6])), "LIMIT", "0",
            ARGV[4])
        for _, id in ipairs(old) do drop_dead_letter(id, ARGV[5]) end
    end
    if #requeued > 0 then redis.call("HINCRBY", P .. ":stats", "requeued", int(#requeued)) end
    if #dead > 0 then redis.call("HINCRBY", P .. ":stats", "dead_lettered", int(#dead)) end
    return {requeued, dead}
end

local function cancel_one(id, retention_ms)
    local r = read_record(id)
    if not r then return "unknown" end
    if r[STATUS] ~= "queued" then return r[STATUS] end
    dequeue(id, r, false)
    finish(id, r, "cancelled", retention_ms)
    return "cancelled"
end

-- cancel: ARGV[3] retention ms, ARGV[4..] ids. Only queued tasks can be cancelled; replies per id
-- "cancelled" or the status that stopped it.
local function cancel()
    local replies = {}
    for i = 4, #ARGV do replies[#replies + 1] = cancel_one(ARGV[i], ARGV[3]) end
    return replies
end

-- cancel_ooi: ARGV[3] retention ms, ARGV[4] organisation, ARGV[5] OOI. Replies the cancelled ids.
local function cancel_ooi()
    local cancelled = {}
    for _, id in ipairs(redis.call("HVALS", group_key(ARGV[4], ARGV[5]))) do
        if cancel_one(id, ARGV[3]) == "cancelled" then cancelled[#cancelled + 1] = id end
    end
    return cancelled
end

-- requeue_dead: ARGV[3] id. A dead letter goes back to its queue with no expired leases counted.
local function requeue_dead()
    local id = ARGV[3]
    if not redis.call("ZSCORE", P .. ":dead", id) then return "not_dead" end
    local r = read_record(id)
    if not r then
        redis.call("ZREM", P .. ":dead", id)
        return "unknown"
    end
    local holder = redis.call("HGET", group_key(r[ORG], r[OOI]), r[HASH])
    if holder then return "duplicate:" .. holder end
    redis.call("ZREM", P .. ":dead", id)
    redis.call("HSET", group_key(r[ORG], r[OOI]), r[HASH], id)
    r[EXPIRED] = "0"
    r[REASON] = ""
    set_status(id, r, "queued", "from the dead letters")
    enqueue(id, r)
    wake("requeue")
    return "queued"
end

-- drop_dead: ARGV[3] retention ms, ARGV[4] id. The record stays for the retention period.
local function drop_dead()
    if not drop_dead_letter(ARGV[4], ARGV[3]) then return "not_dead" end
    return "dropped"
end

-- Rebuild a plugin's busy and unstarted sets from the claimed tasks (P:leases), after its limit changed.
local function count_busy(plugin)
    redis.call("DEL", busy_key(plugin), unstarted_key(plugin))
    for _, id in ipairs(redis.call("ZRANGE", P .. ":leases", "0", "-1")) do
        local r = read_record(id)
        if r and r[PLUGIN] == plugin then
            redis.call("SADD", busy_key(plugin), id)
            if r[STATUS] == "dispatched" then redis.call("SADD", unstarted_key(plugin), id) end
        end
    end
end

-- set_limit: ARGV[3] plugin, ARGV[4] the limit "<concurrency>:<rate count>:<rate window ms>", ARGV[5]
-- "api" or "conf". A limit from the configuration does not replace one the API set or deleted. Replies
-- "set", "same" or "kept".
-- Whether `source` may change a plugin's limit, noting who did: the configuration may not change what
-- the API set or deleted; `configured` says whether the configuration still names the plugin.
local function may_change_limit(plugin, source, configured)
    if source ~= "conf" then
        redis.call("SADD", P .. ":limits_api", plugin)
        return true
    end
    if redis.call("SISMEMBER", P .. ":limits_api", plugin) == 1 then return false end
    redis.call(configured and "SADD" or "SREM", P .. ":limits_conf", plugin)
    return true
end

local function set_limit()
    local plugin, limit, source = ARGV[3], ARGV[4], ARGV[5]
    if not string.match(limit, "^%d+:%d+:%d+$") then return redis.error_reply("set_limit: bad limit") end
    if not may_change_limit(plugin, source, true) then return "kept" end
    if redis.call("HGET", P .. ":limits", plugin) == limit then return "same" end
    redis.call("HSET", P .. ":limits", plugin, limit)
    count_busy(plugin)
    wake("limit")
    return "set"
end

-- delete_limit: ARGV[3] plugin, ARGV[4] "api" or "conf" (the configuration no longer names it).
-- Replies "deleted", "none" or "kept".
local function delete_limit()
    local plugin, source = ARGV[3], ARGV[4]
    if not may_change_limit(plugin, source, false) then return "kept" end
    if redis.call("HDEL", P .. ":limits", plugin) == 0 then return "none" end
    redis.call("DEL", busy_key(plugin), starts_key(plugin), unstarted_key(plugin))
    wake("limit")
    return "deleted"
end

-- limit_states: replies per limited plugin {plugin, limit, busy tasks, starts within its rate window
-- (claimed tasks yet to start included), queued tasks}.
local function limit_states()
    local replies = {}
    if redis.call("EXISTS", P .. ":limits") == 0 then return replies end -- no index walk for nothing
    ensure_plugin_index()
    local flat = redis.call("HGETALL", P .. ":limits")
    for n = 1, #flat, 2 do
        local plugin, limit = flat[n], flat[n + 1]
        local window = counted_window(string.match(limit, ":(%d+)$") or 0)
        local recent = 0
        if window > 0 then
            recent = redis.call("ZCOUNT", starts_key(plugin), "(" .. int(now - window), "+inf") +
                redis.call("SCARD", unstarted_key(plugin))
        end
        local queued = 0
        for _, org in ipairs(redis.call("SMEMBERS", plugin_orgs_key(plugin))) do
            queued = queued + redis.call("ZCARD", plugin_key(org, plugin))
        end
        replies[#replies + 1] = {plugin, limit, redis.call("SCARD", busy_key(plugin)), recent, queued}
    end
    return replies
end

-- set_weights: ARGV[3..] organisation, weight, organisation, weight ...: the organisations' weights,
-- all of them (the others weigh 1). Replies "set" or "same".
local function set_weights()
    local wanted = {}
    for n = 3, #ARGV, 2 do
        if not string.match(ARGV[n + 1] or "", "^[1-9]%d*$") then
            return redis.error_reply("set_weights: bad weight")
        end
        wanted[ARGV[n]] = ARGV[n + 1]
    end
    local flat, same = redis.call("HGETALL", P .. ":weights"), true
    local stored = {}
    for n = 1, #flat, 2 do stored[flat[n]] = flat[n + 1] end
    for org, weight in pairs(wanted) do same = same and stored[org] == weight end
    for org, _ in pairs(stored) do same = same and wanted[org] ~= nil end
    if same then return "same" end
    redis.call("DEL", P .. ":weights", P .. ":credit")
    for org, weight in pairs(wanted) do redis.call("HSET", P .. ":weights", org, weight) end
    return "set"
end

-- group: ARGV[3] the group's key, ARGV[4..] ids: these active tasks are siblings (docs/queue.md).
local function group()
    local key = ARGV[3]
    for n = 4, #ARGV do
        local r = read_record(ARGV[n])
        if r and (QUEUED[r[STATUS]] or CLAIMED[r[STATUS]]) then
            redis.call("SADD", P .. ":dk:" .. key, ARGV[n])
            redis.call("HSET", P .. ":dkof", ARGV[n], key)
        end
    end
    return redis.call("SCARD", P .. ":dk:" .. key)
end

local operations = {
    push = push, claim = claim, dispatch = dispatch, ack = ack, running = running, release = release, renew = renew,
    reap = reap, cancel = cancel, cancel_ooi = cancel_ooi, requeue_dead = requeue_dead,
    drop_dead = drop_dead, set_limit = set_limit, delete_limit = delete_limit, limit_states = limit_states,
    set_weights = set_weights, group = group,
}

local function main(keys, args)
    P, ARGV, now = keys[1], args, tonumber(args[2])
    weighted = nil
    local operation = operations[args[1]]
    if not operation then return redis.error_reply("unknown queue operation: " .. tostring(args[1])) end
    return operation()
end
