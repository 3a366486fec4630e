//! Every text of the console, in Simplified Chinese (the default) and in
//! English: one catalogue per language, side by side so that neither can
//! miss a text the other has (the compiler checks both have every field).

use crate::steps::Step;

/// The console's language.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    Zh,
    En,
}

impl Lang {
    /// From the `kefu_lang` cookie's value; Chinese unless it says `en`.
    pub fn from_code(code: Option<&str>) -> Lang {
        match code {
            Some("en") => Lang::En,
            _ => Lang::Zh,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Lang::Zh => "zh",
            Lang::En => "en",
        }
    }

    /// The `lang` attribute of the pages.
    pub fn html(self) -> &'static str {
        match self {
            Lang::Zh => "zh-CN",
            Lang::En => "en",
        }
    }

    pub fn texts(self) -> &'static Texts {
        match self {
            Lang::Zh => &ZH,
            Lang::En => &EN,
        }
    }

    /// A step's name for people.
    pub fn step(self, step: Step) -> &'static str {
        let t = self.texts();
        match step {
            Step::Greeting => t.step_greeting,
            Step::OrderConfirmation => t.step_order_confirmation,
            Step::RefundPolicy => t.step_refund_policy,
            Step::RevisitPlanner => t.step_revisit_planner,
            Step::Workflow => t.step_workflow,
        }
    }
}

macro_rules! catalogue {
    ($($name:ident: $zh:expr, $en:expr;)+) => {
        /// The texts of one language.
        pub struct Texts {
            $(pub $name: &'static str,)+
        }

        /// 简体中文.
        pub const ZH: Texts = Texts { $($name: $zh,)+ };

        /// English.
        pub const EN: Texts = Texts { $($name: $en,)+ };

        #[cfg(test)]
        pub const NAMES: &[&str] = &[$(stringify!($name),)+];

        #[cfg(test)]
        pub fn all(t: &Texts) -> Vec<&'static str> {
            vec![$(t.$name,)+]
        }
    };
}

catalogue! {
    product: "kefu 客服控制台", "kefu console";
    switch_language: "English", "中文";
    nav_overview: "店铺总览", "Shops";
    nav_audit: "审计日志", "Audit";
    sign_out: "退出", "Sign out";
    signed_in_admin: "管理员", "Admin";
    signed_in_shop: "店铺密钥", "Shop key";
    time_zone: "时间均为北京时间（UTC+8）", "Times are China time (UTC+8)";

    sign_in_title: "登录", "Sign in";
    sign_in_intro: "用管理员令牌登录可管理所有店铺；用店铺的 API 密钥登录只能查看该店铺。", "Sign in with the admin token to manage every shop, or with a shop's API key to see that shop only.";
    key_label: "管理员令牌或店铺密钥", "Admin token or shop key";
    sign_in_button: "登录", "Sign in";
    sign_in_failed: "密钥不正确：既不是管理员令牌，也不是任何店铺的密钥。", "That key is neither the admin token nor any shop's key.";
    signed_out: "已退出。", "Signed out.";

    shops: "店铺", "Shops";
    filter_placeholder: "按店铺 ID 或名称筛选", "Filter by shop id or name";
    filter_button: "筛选", "Filter";
    shop: "店铺", "Shop";
    step: "步骤", "Step";
    version: "版本", "Version";
    serving: "当前服务", "Serving";
    bundled: "内置默认", "bundled default";
    instances_reuse: "实例复用", "reused instances";
    canary: "灰度", "Canary";
    shadow: "影子运行", "Shadow";
    calls_hour: "近一小时调用", "Calls, last hour";
    errors_hour: "近一小时错误", "Errors, last hour";
    unavailable: "不可用", "unavailable";
    load_failures: "加载失败", "Failed to load";
    degraded: "店铺目录加载失败，继续使用已保存的版本", "The shop's folder does not load; its stored versions serve";
    showing: "显示", "Showing";
    of_total: "个，共", "of";
    no_shops: "没有可显示的店铺。", "No shops to show.";
    export_csv: "导出 CSV", "Export CSV";

    tab_steps: "步骤与版本", "Steps & versions";
    tab_decisions: "决策记录", "Decisions";
    tab_timeline: "时间线", "Timeline";
    tab_revisits: "回访", "Revisits";
    tab_kpis: "经营指标", "KPIs";

    step_greeting: "问候", "Greeting";
    step_order_confirmation: "订单确认", "Order confirmation";
    step_refund_policy: "退款决策", "Refund decision";
    step_revisit_planner: "回访计划", "Revisit planning";
    step_workflow: "客服流程", "Workflow";

    versions: "版本", "Versions";
    status: "状态", "Status";
    status_active: "服务中", "active";
    status_canary: "灰度中", "canary";
    status_inactive: "未启用", "inactive";
    who: "操作人", "Who";
    when: "时间", "When";
    source: "来源", "Source";
    digest: "摘要", "Digest";
    changes: "变更", "Changes";
    first_version: "首个版本", "first version";
    deploy_title: "上传新版本", "Deploy a new version";
    deploy_intro: "上传 WebAssembly 组件（.wasm），可附带插件配置（JSON）。新版本先经试运行检查，通过后立即生效；Rust 插件编译通常不到一秒，Python/JavaScript 需要数秒。", "Upload a WebAssembly component (.wasm), optionally with a plugin config (JSON). The new version is tried first and serves at once if the trial passes; a Rust plugin compiles in well under a second, Python or JavaScript in seconds.";
    component_file: "组件文件", "Component file";
    config_json: "插件配置（JSON，可留空沿用当前配置）", "Plugin config (JSON; empty keeps the current one)";
    deploy_button: "上传并启用", "Deploy";
    rollback_button: "回滚到此版本", "Roll back to this";
    admin_only: "上传与回滚需要管理员令牌登录。", "Deploying and rolling back need the admin token.";
    deployed: "已启用新版本", "Now serving version";
    compiling: "仍在编译，完成并通过试运行后自动启用；请稍后刷新。", "Still compiling; it activates when done if its trial passes. Refresh in a moment.";
    rolled_back: "已回滚，当前服务版本", "Rolled back; now serving version";
    canary_running: "灰度发布进行中", "A canary is running";
    promote: "全量发布", "Promote";
    abort: "终止灰度", "Abort";
    shadow_running: "影子运行进行中（仅对比，不影响答复）", "A shadow run is comparing (answers unchanged)";
    no_versions: "此步骤还没有记录的版本（使用内置默认插件）。", "No recorded versions yet (the bundled default serves).";
    step_unavailable: "此步骤当前不可用：", "This step serves nothing now:";

    replays: "回放：新版本会怎么决定", "Replays: what a version would decide";
    replay_intro: "用已记录的版本重新计算过去的决策（使用当时的输入、时间和状态），不影响线上。", "Recompute past decisions with a recorded version (their input, clock and state as logged); nothing live changes.";
    replay: "回放", "Replay";
    start_replay: "开始回放", "Replay";
    days: "最近天数", "Last days";
    replayed: "已回放", "Replayed";
    unchanged: "结果相同", "Unchanged";
    changed: "结果不同", "Changed";
    candidate_errors: "候选版本出错", "Candidate errors";
    money_delta: "退款金额变化", "Refund money change";
    call_time: "调用耗时（原 → 新，中位数）", "Call time (original → candidate, median)";
    flips: "决策变化", "Decision flips";
    changed_fields: "变化的字段", "Changed fields";
    change: "变化", "Change";
    count: "数量", "Count";
    examples: "示例", "Examples";
    original: "原决策", "Original";
    candidate: "候选版本", "Candidate";
    decisions: "决策记录", "Decisions";
    customer: "买家", "Customer";
    order: "订单", "Order";
    all_steps: "全部步骤", "All steps";
    since: "起", "From";
    until: "止", "To";
    search_button: "查询", "Search";
    at: "时间", "At";
    duration: "耗时", "Duration";
    result: "结果", "Result";
    ok: "成功", "ok";
    error: "错误", "Error";
    no_decisions: "没有符合条件的决策。", "No decisions match.";
    scanned_note: "只按步骤或版本筛选时，最多检查最近的记录；按买家或订单查询走索引，不受此限。", "Filtering by step or version alone looks at the newest entries only; searching by customer or order uses the index and has no such limit.";
    decision: "决策", "Decision";
    input: "输入", "Input";
    output: "输出", "Output";
    state_reads: "读取的插件状态", "Plugin state read";
    fallback: "回退", "Fallback";
    in_canary: "灰度客户", "in the canary";
    log_lines: "插件日志", "Plugin log";
    no_log_lines: "此次调用插件没有输出日志。", "The plugin logged nothing in this call.";
    timeline_of: "查看此买家的时间线", "This customer's timeline";
    next_page: "更早的记录", "Older";

    timeline: "时间线", "Timeline";
    timeline_intro: "输入买家 ID 或订单号，查看事件、决策、计时器、动作和回访。", "Enter a customer id or an order id to see its events, decisions, timers, actions and revisits.";
    event: "事件", "Event";
    action: "动作", "Action";
    timer: "计时器", "Timer";
    revisit: "回访", "Revisit";
    pending: "等待中", "pending";
    fired: "已触发", "fired";
    nothing_yet: "暂无记录。", "Nothing yet.";

    revisits: "回访", "Revisits";
    due_now: "今日待回访与逾期", "Due today and overdue";
    overdue: "已逾期", "overdue";
    due_at: "应回访时间", "Due";
    channel: "渠道", "Channel";
    purpose: "目的", "Purpose";
    message: "话术", "Message";
    attempts: "尝试次数", "Attempts";
    record_outcome: "记录回访结果", "Record the outcome";
    satisfaction: "满意度", "Satisfaction";
    note: "备注", "Note";
    agent: "客服", "Agent";
    save: "保存", "Save";
    outcome_saved: "回访结果已保存。", "Outcome saved.";
    result_reached: "已联系上", "reached";
    result_no_answer: "未接通", "no answer";
    result_refused: "拒绝回访", "refused";
    result_wrong_number: "号码错误", "wrong number";
    no_due: "今天没有待回访的客户。", "No revisits due today.";
    report: "回访总结", "Revisit report";
    week: "近 7 天", "Last 7 days";
    month: "近 30 天", "Last 30 days";
    planned: "计划回访", "Planned";
    done: "已完成", "Done";
    unreachable: "联系不上", "Unreachable";
    cancelled: "已取消", "Cancelled";
    open: "未完成", "Open";
    success_rate: "回访成功率", "Success rate";
    satisfaction_average: "平均满意度", "Average satisfaction";
    satisfaction_distribution: "满意度分布", "Satisfaction";
    complaint_causes: "投诉原因", "Complaint causes";
    success_over_time: "每日回访成功率", "Success rate by day";

    kpis: "经营指标", "KPIs";
    refunds: "退款申请", "Refund requests";
    orders_confirmed: "确认订单", "Orders confirmed";
    refund_rate: "退款率（退款申请 / 确认订单）", "Refund rate (requests / orders confirmed)";
    outcome_approve: "同意", "approve";
    outcome_reject: "拒绝", "reject";
    outcome_escalate: "转主管", "escalate";
    outcome_request_evidence: "要求举证", "ask for evidence";
    outcome_explain: "解释说明", "explain";
    refund_outcomes: "退款决策结果", "Refund decisions";
    escalated_share: "转主管比例", "Escalated";
    requested_money: "申请退款金额", "Refunds asked";
    approved_money: "同意退款金额", "Refunds approved";
    decision_time: "退款决策耗时（中位数 / P95）", "Refund decision time (median / p95)";
    refunds_by_day: "每日退款申请", "Refund requests by day";
    complaints: "投诉跟进", "Complaint follow-ups";
    capped_note: "本期退款记录过多，以上数字基于最近的记录：", "Too many refunds in the period: the figures are of the newest";
    no_data: "暂无数据", "no data";

    audit: "审计日志", "Audit";
    actor: "操作方", "Actor";
    reason: "说明", "Detail";
    no_audit: "还没有审计记录。", "Nothing in the audit yet.";

    error_title: "出错了", "Something went wrong";
    forbidden: "此密钥无权查看该页面。", "This key may not see this page.";
    not_found: "没有这个页面或记录。", "No such page or record.";
    bad_form: "提交的内容有误：", "The form has a problem:";
    csrf_failed: "表单已过期或来源不明，请刷新页面后重试。", "The form expired or came from elsewhere; reload the page and try again.";
    back: "返回", "Back";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_languages_have_every_text() {
        for (lang, texts) in [("zh", all(&ZH)), ("en", all(&EN))] {
            for (name, text) in NAMES.iter().zip(texts) {
                assert!(!text.trim().is_empty(), "{lang}: `{name}` is empty");
            }
        }
        // A Chinese text is not the English one left untranslated (the
        // language switch, named in the other language, aside).
        for ((name, zh), en) in NAMES.iter().zip(all(&ZH)).zip(all(&EN)) {
            if *name != "switch_language" && *name != "product" {
                assert_ne!(zh, en, "`{name}` is not translated");
            }
        }
    }
}
