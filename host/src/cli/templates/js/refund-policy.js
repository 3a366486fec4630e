// A kefu refund-policy plugin. Build: npm install && npm run build
// Money (fen) and times are 64-bit in the WIT: they arrive as BigInt.
export function decide(request) {
  const { order } = request;
  const refundable = order.totalPaid > order.refunded ? order.totalPaid - order.refunded : 0n;
  if (request.logistics === 'not-shipped') {
    const amount = request.amount < refundable ? request.amount : refundable;
    return { outcome: { tag: 'approve' }, amount, returnRequired: false, returnShipping: 'none', message: '亲，订单未发货，已为您退款 :)' };
  }
  return {
    outcome: { tag: 'escalate', val: 'shipped orders are decided by a person' },
    amount: 0n,
    returnRequired: false,
    returnShipping: 'none',
    message: '亲，已为您转交主管处理 :)',
  };
}
