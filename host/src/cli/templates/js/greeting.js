// A kefu greeting plugin. Build: npm install && npm run build
export function greet(request) {
  return {
    reply: `${request.customer.nickname}您好，欢迎光临！请问有什么可以为您服务 :)`,
    quickReplies: ['查询物流', '退换货'],
    handOff: false,
    matchedKeywords: [],
    offHours: false,
  };
}
