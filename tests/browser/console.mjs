// The kefu console used as a person uses it, in the system's headless
// Chromium (driven by playwright-core). tests/console_browser.rs starts the
// real server and runs this with:
//   KEFU_URL, KEFU_ADMIN, KEFU_TEA_KEY, KEFU_COMPONENT (a refund-policy
//   component to deploy), KEFU_SHOTS (where screenshots go),
//   KEFU_CHROMIUM (the browser), KEFU_CUSTOMER (a buyer with a decision).
// Exits non-zero, naming the step, on the first thing that is not right.
import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const base = env('KEFU_URL');
const shots = env('KEFU_SHOTS');
mkdirSync(shots, { recursive: true });

const browser = await chromium.launch({
  executablePath: env('KEFU_CHROMIUM'),
  headless: true,
  args: ['--no-sandbox'],
});
const weights = [];

async function shot(page, name) {
  await page.screenshot({ path: `${shots}/${name}.png`, fullPage: true });
  // Page weight without images: the HTML and its stylesheet.
  const html = Buffer.byteLength(await page.content());
  weights.push([name, html]);
  // Nothing wider than the window.
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `${name}: the page is ${overflow}px wider than the window`);
}

async function api(path, key, body) {
  const response = await fetch(`${base}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const answer = await response.json();
  assert.equal(response.status, 200, `${path}: ${JSON.stringify(answer)}`);
  return answer;
}

async function signIn(page, key) {
  await page.goto(`${base}/console`);
  assert.match(page.url(), /\/console\/sign-in/, 'not signed in: to the sign-in page');
  await page.fill('input[name=key]', key);
  await Promise.all([page.waitForURL(`${base}/console`), page.click('button[type=submit]')]);
}

const refund = JSON.parse(
  await (await import('node:fs/promises')).readFile(env('KEFU_REFUND_REQUEST'), 'utf8'),
);

for (const [label, viewport] of [['desktop', { width: 1280, height: 800 }], ['phone', { width: 390, height: 844 }]]) {
  const context = await browser.newContext({ viewport, locale: 'zh-CN' });
  const page = await context.newPage();
  page.setDefaultTimeout(60_000);

  // Sign in with the admin token.
  await page.goto(`${base}/console/sign-in`);
  await shot(page, `${label}-sign-in`);
  await signIn(page, env('KEFU_ADMIN'));
  assert.ok(await page.isVisible('text=山野茶油旗舰店'), 'the overview lists the tea-oil shop');
  await shot(page, `${label}-overview`);

  // Open a shop, then its refund step.
  await page.click('a[href="/console/shops/tea-oil"] >> nth=0');
  await page.waitForURL(`${base}/console/shops/tea-oil`);
  await shot(page, `${label}-shop`);
  await page.goto(`${base}/console/shops/tea-oil/steps/refund-policy`);
  const rows = await page.locator('table tbody tr').count();

  if (label === 'desktop') {
    // Upload a new version and see it answer.
    await page.setInputFiles('input[name=component]', env('KEFU_COMPONENT'));
    await Promise.all([page.waitForURL(/done=deployed/), page.click('form[enctype] button[type=submit]')]);
    const deployed = Number(new URL(page.url()).searchParams.get('v'));
    assert.ok(await page.isVisible(`text=已启用新版本 v${deployed}`), 'the page says the new version serves');
    assert.equal(await page.locator('table tbody tr').count(), rows + 1, 'one more version listed');
    let answer = await api('/v1/shops/tea-oil/refund-decision', env('KEFU_TEA_KEY'), refund);
    assert.equal(answer.plugin.version, deployed, 'the new version answers');
    await shot(page, `${label}-step-deployed`);

    // Roll back to the version before it.
    await Promise.all([
      page.waitForURL(/done=rolled-back/),
      page.click(`tr:has(td:text-is("v${deployed - 1}")) button`),
    ]);
    answer = await api('/v1/shops/tea-oil/refund-decision', env('KEFU_TEA_KEY'), refund);
    assert.equal(answer.plugin.version, deployed - 1, 'the old version answers again');
    await shot(page, `${label}-step-rolled-back`);

    // What the deployed version would have decided: a replay from the
    // step page; its page refreshes itself until the report is in.
    await page.selectOption('select[name=version]', String(deployed));
    await Promise.all([page.waitForURL(/\/replays\/\d+$/), page.click('form[action$="/replays"] button')]);
    await page.waitForSelector('text=已回放', { timeout: 60_000 });
    assert.ok(await page.isVisible('span.tag:text("done")'), 'the replay is done');
    await shot(page, `${label}-replay`);
  } else {
    await shot(page, `${label}-step`);
  }

  // Search a buyer's decisions, open one.
  await page.goto(`${base}/console/shops/tea-oil/decisions`);
  await page.fill('input[name=customer]', env('KEFU_CUSTOMER'));
  await Promise.all([page.waitForURL(/customer=/), page.click('form.search button')]);
  const found = await page.locator('table tbody tr').count();
  assert.ok(found >= 1, 'the buyer has decisions');
  await shot(page, `${label}-decisions`);
  await Promise.all([page.waitForURL(/decisions\/\d+-\d+$/), page.click('table tbody tr >> nth=0 >> a >> nth=0')]);
  assert.ok(await page.isVisible('h2:text("输入")'), 'the decision shows its input');
  await shot(page, `${label}-decision`);
  await page.goto(`${base}/console/shops/tea-oil/timeline?customer=${encodeURIComponent(env('KEFU_CUSTOMER'))}`);
  await shot(page, `${label}-timeline`);

  // Record a revisit outcome and see the report change.
  await page.goto(`${base}/console/shops/crm/revisits`);
  const due = await page.locator('details.outcome').count();
  assert.ok(due >= 1, 'a revisit is due');
  await shot(page, `${label}-revisits`);
  const before = await page.locator('.stat:has-text("已完成") .v').innerText();
  await page.click('details.outcome >> nth=0 >> summary');
  await page.selectOption('details.outcome >> nth=0 >> select[name=result]', 'reached');
  await page.selectOption('details.outcome >> nth=0 >> select[name=satisfaction]', '4');
  await page.fill('details.outcome >> nth=0 >> input[name=note]', '买家很满意');
  await Promise.all([page.waitForURL(/saved=/), page.click('details.outcome >> nth=0 >> button')]);
  assert.ok(await page.isVisible('text=回访结果已保存'), 'the outcome is saved');
  const after = await page.locator('.stat:has-text("已完成") .v').innerText();
  assert.equal(Number(after), Number(before) + 1, 'the report counts the revisit done');
  assert.equal(await page.locator('details.outcome').count(), due - 1, 'no longer due');
  await shot(page, `${label}-revisits-after`);

  await page.goto(`${base}/console/shops/crm/kpis?period=month`);
  await shot(page, `${label}-kpis`);
  await page.goto(`${base}/console/audit`);
  assert.ok(await page.isVisible('text=console-admin >> nth=0'), 'the audit names the console');
  await shot(page, `${label}-audit`);

  // The English switch.
  await page.goto(`${base}/console`);
  await Promise.all([page.waitForURL(`${base}/console`), page.click('a.lang')]);
  assert.ok(await page.isVisible('h1:text("Shops")'), 'the page is in English');
  await shot(page, `${label}-overview-en`);
  await page.click('a.lang');
  await context.close();

  // A shop key: its own shop, never another.
  const shop = await browser.newContext({ viewport, locale: 'zh-CN' });
  const own = await shop.newPage();
  await signIn(own, env('KEFU_TEA_KEY'));
  assert.equal(await own.locator('a[href="/console/shops/apparel"]').count(), 0, 'another shop is not listed');
  const refused = await own.goto(`${base}/console/shops/apparel`);
  assert.equal(refused.status(), 403, 'another shop is refused');
  assert.ok(await own.isVisible('text=此密钥无权查看该页面'), 'the refusal says why');
  await shot(own, `${label}-other-shop-refused`);
  await shop.close();
}
await browser.close();

const css = (await (await fetch(`${base}/console/style.css`)).text()).length;
for (const [name, html] of weights) {
  assert.ok(html + css <= 100 * 1024, `${name}: ${html + css} bytes with its stylesheet, more than 100 KB`);
}
const heaviest = weights.reduce((a, b) => (a[1] > b[1] ? a : b));
console.log(`console in Chromium: ${weights.length} pages looked at; heaviest ${heaviest[0]} ${heaviest[1] + css} bytes with the stylesheet (${css})`);
