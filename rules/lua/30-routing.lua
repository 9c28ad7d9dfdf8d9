-- Routing and plugin selection.
return {
  {
    name = "canary by header",
    match = "api.example.com/*",
    on_request = function(req)
      if req.headers["x-canary"] == "1" then
        req:route("canary")           -- an origin name from the config
        req:set_response_header("x-served-by", "canary")
      end
    end,
  },
  {
    -- Health checks come from the load balancer: no need to run them through the WAF.
    name = "health checks skip the WAF",
    match = "*/grpc.health.v1.Health/*",
    on_request = function(req)
      req:skip("modsecurity")         -- false (and nothing skipped) when no such plugin is loaded
    end,
  },
}
