-- Business rules on decoded gRPC messages. With the service's protobuf descriptors loaded
-- (`descriptors:` in the config), msg.fields is keyed by field name ("amount", "customer.email");
-- without them by field number ("2", "3.1").
return {
  {
    name = "no refunds over 10000 from suspected bots",
    match = "*/shop.v1.Orders/Refund",
    on_message = function(req, msg)
      -- req.bot.score comes from the bot plugin (1 = automated ... 99 = human); nil without it.
      local score = req.bot.score or 99
      if score < 30 and tonumber(msg.fields["amount"] or 0) > 10000 then
        return req:deny("PERMISSION_DENIED", "refused")
      end
    end,
  },
  {
    name = "one refund per call",
    match = "*/shop.v1.Orders/Refund",
    on_message = function(req, msg)
      -- msg.index counts the messages of the call from 0.
      if msg.index > 0 then
        return req:deny("INVALID_ARGUMENT", "one refund per call")
      end
    end,
  },
  {
    name = "tag orders for the origin's logs",
    match = "shop.example.com/shop.v1.*/*",
    on_request = function(req)
      -- $1 is the service after "shop.v1.", $2 the method.
      req:set_header("x-shop-call", req.captures[1] .. "." .. req.captures[2])
      req:publish("shop.call", req.captures[2])
    end,
  },
}
