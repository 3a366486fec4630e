// Greeting of 山野茶油旗舰店 (the tea-oil example shop), in JavaScript.
//
// Same config as the default greeting plugin, plus keyword quick replies:
// each keyword entry may carry `quick_replies`, shown instead of the
// default ones when it matches (ask about eating → recipes, ask about the
// courier → tracking...).
//
// Build: node ../build.mjs greeting.js greeting greeting.wasm
import { get as getConfig } from 'kefu:workflow/config@0.1.0';
import { now } from 'kefu:workflow/clock@0.1.0';

const DEFAULTS = {
  shop_name: '本店',
  agent_name: '小美',
  timezone_offset_minutes: 480,
  shifts: [{ start: '08:30', end: '17:00' }, { start: '16:30', end: '24:00' }],
  welcome: '您好，欢迎光临{shop}，我是客服{agent}，很高兴为您效劳，请问有什么可以为您服务 :)',
  returning_welcome: '{nickname}您好，欢迎回来！我是客服{agent}，很高兴再次为您服务，请问有什么可以帮您 :)',
  member_welcome: '尊敬的{level}{nickname}，欢迎回来！我是客服{agent}，很高兴为您服务，请问有什么可以帮您 :)',
  offline_reply: '您好，欢迎光临{shop}！现在是非工作时间，客服将于{next_open}上线，您的留言我们已经收到，上线后会第一时间回复您，请您谅解 :)',
  handoff_reply: '请您稍等，正在为您转接人工客服 :)',
  keywords: [],
  handoff_keywords: ['人工', '投诉', '差评', '举报'],
  small_talk: ['在吗', '在不在', '你好', '您好', 'hello', 'hi', '亲', '客服'],
  quick_replies: ['查询物流', '退换货', '优惠活动', '联系人工'],
  courier: '中通快递',
  delivery_days: '2-4',
};

function loadConfig() {
  let cfg;
  try {
    cfg = JSON.parse(getConfig() || '{}');
  } catch (e) {
    throw `invalid plugin config: ${e}`;
  }
  for (const key of Object.keys(cfg)) {
    if (!(key in DEFAULTS)) throw `invalid plugin config: unknown key \`${key}\``;
  }
  return { ...DEFAULTS, ...cfg };
}

function minutes(hhmm) {
  const m = /^(\d{1,2}):(\d{2})$/.exec(hhmm.trim());
  if (!m || +m[1] > 24 || +m[2] >= 60) throw `invalid plugin config: time \`${hhmm}\` is not HH:MM`;
  return +m[1] * 60 + +m[2];
}

const hhmm = (mins) => `${String(Math.floor(mins / 60) % 24).padStart(2, '0')}:${String(mins % 60).padStart(2, '0')}`;
const fill = (text, vars) => text.replace(/\{(\w+)\}/g, (all, name) => (name in vars ? vars[name] : all));
const inShift = (m, [s, e]) => (s < e ? m >= s && m < e : m >= s || m < e);

function nextOpen(minute, shifts) {
  const later = shifts.map(([s]) => s).filter((s) => s > minute);
  if (later.length) return `今天${hhmm(Math.min(...later))}`;
  return shifts.length ? `明天${hhmm(Math.min(...shifts.map(([s]) => s)))}` : '工作时间';
}

function isSmallTalk(message, words) {
  let rest = message.toLowerCase();
  for (const w of words) rest = rest.split(w.toLowerCase()).join('');
  // Letters, digits and CJK ideographs count as words.
  return !/[0-9a-z\u3400-\u9fff\uf900-\ufaff]/i.test(rest);
}

export function greet(request) {
  const cfg = loadConfig();
  const shifts = cfg.shifts.map((s) => [minutes(s.start), minutes(s.end)]);
  const c = request.customer;
  const vars = {
    shop: cfg.shop_name,
    agent: request.agentName ?? cfg.agent_name,
    nickname: c.nickname,
    level: c.memberLevel ?? '',
    courier: cfg.courier,
    delivery_days: cfg.delivery_days,
  };
  const message = request.message.trim();
  const matched = [];
  const answers = [];
  let quickReplies = null;
  for (const entry of cfg.keywords) {
    const word = entry.keywords.find((k) => k && message.includes(k));
    if (word === undefined) continue;
    matched.push(word);
    answers.push(fill(entry.reply, vars));
    if (!quickReplies && entry.quick_replies) quickReplies = entry.quick_replies;
  }
  const wantsPerson = cfg.handoff_keywords.some((k) => k && message.includes(k));
  const unanswered = answers.length === 0 && !isSmallTalk(message, cfg.small_talk);
  const secondsLocal = Number(now()) + cfg.timezone_offset_minutes * 60;
  const minute = Math.floor((((secondsLocal % 86400) + 86400) % 86400) / 60);
  const offHours = !shifts.some((s) => inShift(minute, s));

  let reply;
  if (offHours) {
    reply = fill(cfg.offline_reply, { ...vars, next_open: nextOpen(minute, shifts) });
  } else if (c.memberLevel && (c.returning || c.orderCount > 0)) {
    reply = fill(cfg.member_welcome, vars);
  } else if (c.returning || c.orderCount > 0) {
    reply = fill(cfg.returning_welcome, vars);
  } else {
    reply = fill(cfg.welcome, vars);
  }
  for (const a of answers) reply += `\n${a}`;
  if (wantsPerson && !offHours) reply += `\n${fill(cfg.handoff_reply, vars)}`;
  return {
    reply,
    quickReplies: quickReplies ?? cfg.quick_replies,
    handOff: wantsPerson || unanswered,
    matchedKeywords: matched,
    offHours,
  };
}
