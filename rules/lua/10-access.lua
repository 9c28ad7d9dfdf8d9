-- Access rules for the API host. Files in this directory run in file-name order, and the rules of a
-- file in list order; the first rule that denies ends the evaluation. Each rule has a `match`
-- pattern "host/path" where `*` matches anything (captured as req.captures[1], [2], ...).
return {
  {
    name = "admin API only from the office",
    match = "api.example.com/admin.v1.AdminService/*",
    on_request = function(req)
      -- Lua patterns, not regular expressions: "%." is a literal dot.
      if not req.client.ip:match("^10%.1%.") then
        return req:deny("PERMISSION_DENIED", "admin API is office-only")
      end
    end,
  },
  {
    name = "API calls need a key",
    match = "api.example.com/*",
    on_request = function(req)
      local key = req.headers["x-api-key"]
      if not key or #key < 16 then
        return req:deny("UNAUTHENTICATED", "missing or malformed x-api-key")
      end
    end,
  },
  {
    -- Headers the origin trusts must come from the edge, never from a client.
    name = "strip internal headers",
    match = "*",
    on_request = function(req)
      for name in pairs(req.headers) do
        if name:sub(1, 11) == "x-internal-" then
          req:remove_header(name)
        end
      end
      req:set_header("x-internal-client-ip", req.client.ip)
    end,
  },
}
