"""A kefu workflow plugin: the shop's flow. Build: componentize-py -d wit -w workflow componentize app -o plugin.wasm"""
import wit_world
from wit_world.imports.flow import (
    Action_CancelTimer,
    Action_RunStep,
    Action_ScheduleTimer,
    Action_SendMessage,
    EventData_MessageReceived,
    EventData_OrderCreated,
    EventData_OrderPaid,
    EventData_StepCompleted,
    EventData_TimerFired,
    FlowInput,
    FlowOutput,
    Message,
    RunStep,
    StepCall_Greeting,
    StepOutput_Greeting,
    Subject_Customer,
    Timer,
)
from wit_world.imports.types import Channel


class WitWorld(wit_world.WitWorld):
    def handle(self, input: FlowInput) -> FlowOutput:
        event = input.event
        data = event.data
        actions = []
        if isinstance(data, EventData_MessageReceived):
            # A buyer wrote: run the shop's greeting step.
            actions.append(Action_RunStep(RunStep("greeting", StepCall_Greeting(data.value))))
        elif isinstance(data, EventData_StepCompleted):
            # The greeting answered: send its reply.
            output = data.value.output
            if isinstance(output, StepOutput_Greeting) and isinstance(event.subject, Subject_Customer):
                actions.append(Action_SendMessage(Message(event.subject.value, Channel.CHAT, output.value.reply)))
        elif isinstance(data, EventData_OrderCreated):
            # Remind an unpaid order once, two hours after it was placed.
            order = data.value.order
            actions.append(Action_ScheduleTimer(Timer("payment-reminder", order.created_at + 2 * 3600, data.value.customer.id)))
        elif isinstance(data, EventData_OrderPaid):
            actions.append(Action_CancelTimer("payment-reminder"))
        elif isinstance(data, EventData_TimerFired) and data.value.name == "payment-reminder":
            actions.append(Action_SendMessage(Message(data.value.payload, Channel.CHAT, "亲，您拍下的宝贝还没有付款哦 :)")))
        return FlowOutput(actions, None)
