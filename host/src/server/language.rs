//! API error messages in Simplified Chinese for callers whose
//! `Accept-Language` prefers Chinese (English otherwise): one catalogue,
//! by the error's stable code. What only the error knows (a field's path,
//! a serde or plugin message, a shop's name) follows the Chinese sentence
//! as the English text gives it; the code and the envelope's shape are
//! the same in both languages.

use super::ApiError;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// The Chinese envelope of an error answer, kept beside the English one
/// until the layer knows which the caller wants.
#[derive(Clone)]
pub struct Chinese(pub Value);

/// The Chinese sentence for `code`, or `None` for a code the catalogue
/// does not have (the English message is kept then).
fn sentence(code: &str) -> Option<&'static str> {
    Some(match code {
        "unauthorized" => "缺少 API 密钥：请发送 `Authorization: Bearer <密钥>` 或 `X-Kefu-Key`",
        "forbidden" => "此密钥无权访问：它既不是该店铺的密钥，也不是管理员令牌",
        "unknown_shop" => "没有这个店铺",
        "starting" => "kefu 正在启动，店铺尚未全部加载，请稍后重试",
        "unknown_step" => {
            "没有这个步骤：应为 greeting、order-confirmation、refund-decision、revisit-plan 或 workflow"
        }
        "invalid_json" => "请求体不是有效的 JSON",
        "invalid_field" => "字段无效",
        "invalid_query" => "查询参数无效",
        "invalid_path" => "路径参数无效",
        "invalid_config" => "插件配置无效",
        "method_not_allowed" => "此处不允许该请求方法，API 说明见 README",
        "body_too_large" => "请求体超过大小上限",
        "request_timeout" => "请求体停顿时间超过服务器等待上限（`[http] body_timeout_secs`）",
        "not_found" => "未找到",
        "bad_request" => "请求无效",
        "conflict" => "与当前状态冲突",
        "plugin_rejected" => "插件被拒绝，当前版本继续服务",
        "quota_exceeded" => "超出店铺配额",
        "plugin_unavailable" => "该步骤暂无可用插件",
        "storage_error" => "存储故障",
        "host_error" => "kefu 内部错误",
        "internal_error" => "kefu 处理此请求时出错（程序缺陷，已按请求 id 记入日志）",
        "wrong_step" => "插件实现的不是该步骤",
        "plugin_timeout" => "插件超时",
        "plugin_memory_limit" => "插件超出内存上限",
        "plugin_stack_overflow" => "插件栈溢出",
        "plugin_trap" => "插件崩溃（trap）",
        "plugin_output_too_large" => "插件输出过大",
        "plugin_error" => "插件报告错误",
        "plugin_invalid_output" => "插件输出不符合要求",
        _ => return None,
    })
}

/// The message in Chinese: the catalogue's sentence, then what only this
/// error knows.
pub fn message(e: &ApiError) -> String {
    let english = e.to_string();
    let Some(sentence) = sentence(e.code()) else {
        return english;
    };
    match e {
        // Fixed texts: the sentence says it all.
        ApiError::Access(
            crate::app::AccessError::Unauthorized | crate::app::AccessError::Forbidden,
        )
        | ApiError::MethodNotAllowed
        | ApiError::BodyTimeout
        | ApiError::UnknownStep(_)
        | ApiError::Internal => sentence.to_string(),
        ApiError::InvalidField { path, message }
        | ApiError::Step(crate::app::StepError::InvalidField { path, message }) => {
            format!("字段 `{path}` 无效：{message}")
        }
        ApiError::TooLarge(kib) => format!("{sentence}（{kib} KiB）"),
        _ => format!("{sentence}：{english}"),
    }
}

/// Whether `accept_language` prefers Chinese: its tag of highest quality
/// (the first among equals) is `zh` or a `zh-` tag.
pub fn wants_chinese(accept_language: &str) -> bool {
    let mut best: Option<(f32, &str)> = None;
    for part in accept_language.split(',') {
        let mut pieces = part.split(';');
        let tag = pieces.next().unwrap_or("").trim();
        if tag.is_empty() {
            continue;
        }
        let q = pieces
            .find_map(|p| p.trim().strip_prefix("q="))
            .and_then(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        if q > 0.0 && best.is_none_or(|(b, _)| q > b) {
            best = Some((q, tag));
        }
    }
    best.is_some_and(|(_, tag)| {
        let primary = tag.split('-').next().unwrap_or("");
        primary.eq_ignore_ascii_case("zh")
    })
}

/// Whether the request's `Accept-Language` prefers Chinese.
pub fn prefers_chinese(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(wants_chinese)
}

/// The answer in Chinese, if it is an error answer (the request layer
/// calls this for a caller who prefers Chinese).
pub fn localize(mut response: Response) -> Response {
    let Some(Chinese(body)) = response.extensions_mut().remove::<Chinese>() else {
        return response;
    };
    let (mut parts, _) = response.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts
        .headers
        .insert(header::CONTENT_LANGUAGE, HeaderValue::from_static("zh-CN"));
    let json = axum::Json(body).into_response();
    Response::from_parts(parts, json.into_body())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chinese_when_preferred() {
        assert!(wants_chinese("zh-CN,zh;q=0.9,en;q=0.8"));
        assert!(wants_chinese("zh"));
        assert!(wants_chinese("en;q=0.5, zh-Hans;q=0.9"));
        assert!(!wants_chinese("en-US,en;q=0.9,zh-CN;q=0.8"));
        assert!(!wants_chinese("zh;q=0"));
        assert!(!wants_chinese(""));
        assert!(!wants_chinese("*"));
    }

    #[test]
    fn every_code_the_api_answers_has_a_sentence() {
        let codes = [
            ApiError::Access(crate::app::AccessError::Unauthorized),
            ApiError::InvalidJson("x".into()),
            ApiError::InvalidField {
                path: "customer.nickname".into(),
                message: "missing field `nickname`".into(),
            },
            ApiError::NotFound("no event `e1`".into()),
            ApiError::TooLarge(256),
        ];
        let texts: Vec<String> = codes.iter().map(message).collect();
        assert_eq!(texts[0], sentence("unauthorized").unwrap());
        assert_eq!(
            texts[1],
            "请求体不是有效的 JSON：request body is not valid JSON: x"
        );
        assert_eq!(
            texts[2],
            "字段 `customer.nickname` 无效：missing field `nickname`"
        );
        assert_eq!(texts[3], "未找到：no event `e1`");
        assert_eq!(texts[4], "请求体超过大小上限（256 KiB）");
    }
}
