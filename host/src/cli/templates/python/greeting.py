"""A kefu greeting plugin. Build: componentize-py -d wit -w greeting componentize app -o plugin.wasm"""
import wit_world
from wit_world.imports.types import GreetingReply, GreetingRequest


class WitWorld(wit_world.WitWorld):
    def greet(self, request: GreetingRequest) -> GreetingReply:
        return GreetingReply(
            reply=f"{request.customer.nickname}您好，欢迎光临！请问有什么可以为您服务 :)",
            quick_replies=["查询物流", "退换货"],
            hand_off=False,
            matched_keywords=[],
            off_hours=False,
        )
