//! The demo API's data: deterministic customers with the personal data a Chinese consumer
//! API holds (names, PRC resident IDs with their GB 11643 check digit, mobiles, UnionPay cards
//! with their Luhn digit, e-mails, addresses), rendered as the JSON documents nginx serves.
//! Generated here rather than by a faker so that the demo needs nothing but Rust, and every
//! number passes the validators the labeller applies (an invalid check digit is not a PRC ID).

use crate::attacks::lab::Rng;

const SURNAMES: &[&str] = &[
    "王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱", "胡", "郭",
];
const GIVEN: &[&str] = &[
    "伟", "芳", "娜", "敏", "静", "磊", "洋", "艳", "勇", "军", "杰", "娟", "涛", "明", "超", "霞",
    "平", "刚", "桂英", "秀兰", "建华", "志强", "海燕", "晓东",
];
/// (administrative division code, city, district) of GB/T 2260.
const REGIONS: &[(&str, &str, &str)] = &[
    ("110105", "北京市", "朝阳区"),
    ("310104", "上海市", "徐汇区"),
    ("440305", "深圳市", "南山区"),
    ("330106", "杭州市", "西湖区"),
    ("510107", "成都市", "武侯区"),
    ("420106", "武汉市", "武昌区"),
];
const ROADS: &[&str] = &["建国路", "中山路", "人民路", "解放路", "长江路", "科技园路"];
const MOBILE_PREFIXES: &[&str] = &["138", "139", "150", "158", "186", "177", "199", "135"];
/// UnionPay debit-card IINs (62xxxx) of large issuers.
const UNIONPAY_IINS: &[&str] = &["622202", "622848", "621700", "622588", "621483"];
const MAIL_DOMAINS: &[&str] = &["qq.com", "163.com", "126.com", "example.cn"];

/// One customer record.
pub struct Customer {
    pub id: u32,
    pub name: String,
    pub gender: &'static str,
    pub birth_date: String,
    pub prc_id: String,
    pub mobile: String,
    pub bank_card: String,
    pub email: String,
    pub address: String,
}

/// GB 11643-1999 check character of the first 17 digits (ISO 7064 MOD 11-2).
pub fn prc_check_char(first17: &str) -> char {
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    const CHECK: &[u8; 11] = b"10X98765432";
    let sum: u32 = first17
        .bytes()
        .zip(WEIGHTS)
        .map(|(b, w)| u32::from(b - b'0') * w)
        .sum();
    char::from(CHECK[(sum % 11) as usize])
}

/// Luhn check digit to append to `partial` (ISO/IEC 7812).
pub fn luhn_check_digit(partial: &str) -> char {
    let sum: u32 = partial
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 0 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    char::from(b'0' + ((10 - sum % 10) % 10) as u8)
}

/// `n` customers with ids 1..=n, the same on every run.
pub fn customers(n: u32) -> Vec<Customer> {
    let mut rng = Rng::new(20_261_207);
    (1..=n)
        .map(|id| {
            let pick = |rng: &mut Rng, list: &[&'static str]| list[rng.below(list.len())];
            let name = format!("{}{}", pick(&mut rng, SURNAMES), pick(&mut rng, GIVEN));
            let (region, city, district) = REGIONS[rng.below(REGIONS.len())];
            let (y, m, d) = (1960 + rng.below(45), 1 + rng.below(12), 1 + rng.below(28));
            let seq = rng.below(1000);
            // The 17th digit is odd for men, even for women (GB 11643 §5.4).
            let male = seq % 2 == 1;
            let first17 = format!("{region}{y:04}{m:02}{d:02}{seq:03}");
            let prc_id = format!("{first17}{}", prc_check_char(&first17));
            let mobile = format!(
                "{}{:08}",
                pick(&mut rng, MOBILE_PREFIXES),
                rng.next() % 100_000_000
            );
            let partial = format!(
                "{}{:09}",
                pick(&mut rng, UNIONPAY_IINS),
                rng.next() % 1_000_000_000
            );
            let bank_card = format!("{partial}{}", luhn_check_digit(&partial));
            let email = format!(
                "{}{}@{}",
                ["cust", "user", "vip", "member"][rng.below(4)],
                10_000 + rng.below(90_000),
                pick(&mut rng, MAIL_DOMAINS)
            );
            let address = format!(
                "{city}{district}{}{}号",
                pick(&mut rng, ROADS),
                1 + rng.below(300)
            );
            Customer {
                id,
                name,
                gender: if male { "男" } else { "女" },
                birth_date: format!("{y:04}-{m:02}-{d:02}"),
                prc_id,
                mobile,
                bank_card,
                email,
                address,
            }
        })
        .collect()
}

impl Customer {
    fn level(&self) -> &'static str {
        ["普通", "银卡", "金卡"][self.id as usize % 3]
    }

    /// The detail document (`GET /api/v1/customers/{id}`): every value in clear, as a
    /// back-office API that trusts its callers serves it.
    pub fn detail_json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "name": self.name,
            "gender": self.gender,
            "birth_date": self.birth_date,
            "id_card": self.prc_id,
            "mobile": self.mobile,
            "email": self.email,
            "bank_card": self.bank_card,
            "address": self.address,
            "level": self.level(),
        })
    }

    /// The list row (`GET /api/v1/customers?page=N`): the application masks what a list
    /// needs only to recognise, so the data map shows masked fields next to clear ones.
    pub fn list_json(&self) -> serde_json::Value {
        let keep = |s: &str, head: usize, tail: usize| {
            let chars: Vec<char> = s.chars().collect();
            let stars = chars.len().saturating_sub(head + tail);
            let mut out: String = chars.iter().take(head).collect();
            out.extend(std::iter::repeat_n('*', stars));
            out.extend(chars.iter().skip(head + stars));
            out
        };
        serde_json::json!({
            "id": self.id,
            "name": self.name,
            "mobile": keep(&self.mobile, 3, 4),
            "id_card": keep(&self.prc_id, 6, 4),
            "bank_card": keep(&self.bank_card, 4, 4),
            "level": self.level(),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code
    use super::*;

    #[test]
    fn check_digits_match_the_standards() {
        // The GB 11643-1999 annex example.
        assert_eq!(prc_check_char("11010519491231002"), 'X');
        assert_eq!(luhn_check_digit("411111111111111"), '1');
        assert_eq!(luhn_check_digit("7992739871"), '3');
    }

    #[test]
    fn customers_are_deterministic_and_well_formed() {
        let a = customers(50);
        let b = customers(50);
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.prc_id, y.prc_id);
            assert_eq!(x.prc_id.len(), 18);
            assert_eq!(x.mobile.len(), 11);
            assert_eq!(x.bank_card.len(), 16);
            assert!(x.bank_card.starts_with("62"));
        }
        let row = a[0].list_json();
        let masked = row["mobile"].as_str().unwrap();
        assert_eq!(masked.len(), 11);
        assert_eq!(&masked[3..7], "****");
    }
}
