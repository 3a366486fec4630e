"""A kefu revisit-planner plugin. Build: componentize-py -d wit -w revisit-planner componentize app -o plugin.wasm"""
import wit_world
from wit_world.imports import clock
from wit_world.imports.types import AttemptPolicy, Channel, PlannedRevisit, RevisitPlan, RevisitRequest


class WitWorld(wit_world.WitWorld):
    def plan(self, request: RevisitRequest) -> RevisitPlan:
        channel = request.preferred_channel if request.preferred_channel is not None else Channel.CHAT
        revisit = PlannedRevisit(
            due_at=clock.now() + 7 * 86_400,
            channel=channel,
            purpose="satisfaction",
            message=f"{request.customer.nickname}您好，宝贝用着还满意吗？",
            attempts=AttemptPolicy(max_attempts=3, retry_after_hours=24),
        )
        return RevisitPlan(revisits=[revisit])
