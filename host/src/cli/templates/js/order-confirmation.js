// A kefu order-confirmation plugin. Build: npm install && npm run build
export function confirm(request) {
  const phone = request.order.address.phone;
  const verdict = phone.length === 11 && phone.startsWith('1')
    ? { tag: 'ok' }
    : { tag: 'needs-fix', val: [{ kind: 'invalid-phone', field: 'order.address.phone', detail: 'not an 11-digit mobile number' }] };
  return { verdict, message: '亲，订单信息已核对 :)', remark: undefined, mergeWith: [] };
}
