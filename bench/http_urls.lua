-- http_urls.lua - wrk script of bench/http.sh: every request asks for an
-- image picked at random from a list of paths (one per line, the file named
-- after `--`), so the load is spread over the whole set. Prints p99 in
-- microseconds and the error count for the script to parse.
local paths = {}

function init(args)
    for line in io.lines(args[1]) do
        paths[#paths + 1] = line
    end
    math.randomseed(os.time() + tonumber(tostring(paths):sub(-8), 16))
end

function request()
    return wrk.format("GET", paths[math.random(#paths)])
end

function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format("p99_us=%d\n", latency:percentile(99)))
    io.write(string.format("errors=%d\n", e.connect + e.read + e.write + e.status + e.timeout))
end
