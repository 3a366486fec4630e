// A kefu workflow plugin: the shop's flow. Build: npm install && npm run build
// Times are 64-bit in the WIT: they arrive as BigInt.
export function handle(input) {
  const { event } = input;
  const { tag, val } = event.data;
  const actions = [];
  if (tag === 'message-received') {
    // A buyer wrote: run the shop's greeting step.
    actions.push({ tag: 'run-step', val: { tag: 'greeting', call: { tag: 'greeting', val } } });
  } else if (tag === 'step-completed') {
    // The greeting answered: send its reply.
    const output = val.output;
    if (output && output.tag === 'greeting' && event.subject.tag === 'customer') {
      actions.push({ tag: 'send-message', val: { customerId: event.subject.val, channel: 'chat', text: output.val.reply } });
    }
  } else if (tag === 'order-created') {
    // Remind an unpaid order once, two hours after it was placed.
    actions.push({ tag: 'schedule-timer', val: { name: 'payment-reminder', at: val.order.createdAt + 7200n, payload: val.customer.id } });
  } else if (tag === 'order-paid') {
    actions.push({ tag: 'cancel-timer', val: 'payment-reminder' });
  } else if (tag === 'timer-fired' && val.name === 'payment-reminder') {
    actions.push({ tag: 'send-message', val: { customerId: val.payload, channel: 'chat', text: '亲，您拍下的宝贝还没有付款哦 :)' } });
  }
  return { actions, state: undefined };
}
