"""A kefu order-confirmation plugin. Build: componentize-py -d wit -w order-confirmation componentize app -o plugin.wasm"""
import wit_world
from wit_world.imports.types import (
    Confirmation,
    ConfirmationRequest,
    ConfirmationVerdict_NeedsFix,
    ConfirmationVerdict_Ok,
    IssueKind,
    OrderIssue,
)


class WitWorld(wit_world.WitWorld):
    def confirm(self, request: ConfirmationRequest) -> Confirmation:
        phone = request.order.address.phone
        if len(phone) == 11 and phone.startswith("1"):
            verdict = ConfirmationVerdict_Ok()
        else:
            issue = OrderIssue(IssueKind.INVALID_PHONE, "order.address.phone", "not an 11-digit mobile number")
            verdict = ConfirmationVerdict_NeedsFix([issue])
        return Confirmation(verdict=verdict, message="亲，订单信息已核对 :)", remark=None, merge_with=[])
