// A kefu revisit-planner plugin. Build: npm install && npm run build
import { now } from 'kefu:workflow/clock@0.1.0';

export function plan(request) {
  return {
    revisits: [{
      dueAt: now() + 7n * 86400n,
      channel: request.preferredChannel ?? 'chat',
      purpose: 'satisfaction',
      message: `${request.customer.nickname}您好，宝贝用着还满意吗？`,
      attempts: { maxAttempts: 3, retryAfterHours: 24 },
    }],
  };
}
