//! Word lists for personal attributes: Chinese surnames (the ~400 most common single-character
//! surnames plus compound surnames), province-level names and plate abbreviations
//! (GA 36-2018), address markers.

/// Common single-character Chinese surnames.
const SURNAME_LINES: &[&str] = &[
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡",
    "余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯",
    "龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤常温康施文牛樊葛邢安齐易乔伍庞颜倪庄聂章",
    "鲁岳翟殷詹申欧耿关兰焦俞左柳甘祝包宁尚符舒阮柯纪梅童凌毕单季裴霍涂成苗谷盛曲翁冉",
    "骆蓝路游辛靳管柴蒙鲍华喻祁蒲房滕屈饶解牟艾尤阳时穆农司卓古吉缪简车项连芦麦褚娄窦",
    "戚岑景党宫费卜冷晏席卫米柏宗瞿桂全佟应臧闵苟邬边卞姬师和仇栾隋商刁沙荣巫寇桑郎甄",
    "丛仲虞敖巩明佘池查麻苑迟邝官封谈匡鞠惠荆乐冀郁胥南班储原栗燕楚鄢劳谌奚皮粟冼蔺楼",
    "盘满闻位厉伊仝区郜海阚花权强帅屠豆朴盖练廉禹井祖漆巴丰支卿国狄平计索宣晋相初门云",
    "容敬来扈晁芮都普阙浦戈伏鹿薄邸雍辜羊阿乌母裘亓修邰赫杭况那宿鲜印逯隆茹诸战慕危玉",
    "银亢嵩帖蔚蓟阎年萧傅赖洪嵇公哈湛宾戎勾茅利呼居揭干但尉冶斯元束檀衣信展阴昝智幸奉",
    "植衡富尧闭由",
];

/// Compound (two-character) surnames.
pub const COMPOUND_SURNAMES: &[&str] = &[
    "欧阳", "上官", "司马", "诸葛", "东方", "皇甫", "尉迟", "公孙", "慕容", "长孙", "宇文", "司徒",
    "令狐", "夏侯", "端木", "独孤", "南宫", "西门", "轩辕", "万俟", "闻人", "澹台", "公冶", "宗政",
];

/// Licence-plate province abbreviations (GA 36-2018).
pub const PLATE_PROVINCES: &str =
    "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼使领";

/// Characters that mark a Chinese postal address.
pub const ADDRESS_MARKERS: &str = "省市区县路街号镇乡村巷弄栋室楼座幢单元小区大道州盟旗";

/// Sorted code points of the single-character surnames.
pub fn surname_table() -> Vec<u32> {
    let mut v: Vec<u32> = SURNAME_LINES
        .iter()
        .flat_map(|l| l.chars())
        .map(u32::from)
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}
