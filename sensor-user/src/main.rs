use aya::programs::{Xdp, XdpMode, SchedClassifier, TcAttachType};
fn main() -> anyhow::Result<()> {
    let mut bpf = aya::Ebpf::load(aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/apitap-sensor-ebpf")))?;
    let iface = std::env::args().nth(1).unwrap();
    let p: &mut Xdp = bpf.program_mut("apitap_xdp_ingress").unwrap().try_into()?;
    p.load()?; p.attach(&iface, XdpMode::Skb)?;
    let p: &mut SchedClassifier = bpf.program_mut("apitap_tc_egress").unwrap().try_into()?;
    p.load()?; p.attach(&iface, TcAttachType::Egress)?;
    println!("loaded ok");
    Ok(())
}
