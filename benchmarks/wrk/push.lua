-- wrk: push a new boefje task per request, each on an object of its own (no two share a work identity),
-- as OpenKAT's web UI pushes a manual run: JSON with its Content-Type, priority 1, a null id. WRK_RUN keeps the objects of two runs apart.
local run = os.getenv("WRK_RUN") or "run"
local counter = 0
local threads = 0

function setup(thread)
    thread:set("thread_id", threads)
    threads = threads + 1
end

function request()
    counter = counter + 1
    local org = "org" .. (counter % 10)
    local ooi = "Hostname|internet|" .. run .. "-" .. tostring(thread_id) .. "-" .. counter .. ".example"
    local body = '{"scheduler_id":"boefje","organisation":"' .. org .. '","priority":1,"data":{"type":"boefje",' ..
        '"id":null,"boefje":{"id":"dns-records","name":"DNS records","version":null,"oci_image":null},' ..
        '"input_ooi":"' .. ooi .. '","organization":"' .. org .. '","deduplication_key":null}}'
    return wrk.format("POST", "/schedulers/boefje/push", {["Content-Type"] = "application/json"}, body)
end
