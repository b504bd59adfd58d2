import sys
# mix: list of (kind, count) per "iteration"; registers: dpbusd dests rotate over zmm0-11 (12 chains), others use zmm12-27 as dests.
K = {
 "dp": "vpdpbusd %%zmm30,%%zmm31,%%zmm{d}",
 "dpm": "vpdpbusd {o}(%0),%%zmm31,%%zmm{d}",
 "ld": "vmovdqu64 {o}(%0),%%zmm{o2}",
 "and": "vpandd %%zmm30,%%zmm31,%%zmm{o2}",
 "srl": "vpsrlw $4,%%zmm30,%%zmm{o2}",
 "unp": "vpunpckldq %%zmm30,%%zmm31,%%zmm{o2}",
 "cvt": "vcvtdq2ps %%zmm30,%%zmm{o2}",
 "mul": "vmulps %%zmm30,%%zmm31,%%zmm{o2}",
 "fma": "vfmadd231ps %%zmm30,%%zmm31,%%zmm{f}",
 "gf": "vgf2p8affineqb $0,%%zmm30,%%zmm31,%%zmm{o2}",
 "sc": "add $1,%%r{s}",
 "pf": "prefetcht0 {o}+4096(%0)",
 "perm": "vpermps %%zmm30,%%zmm31,%%zmm{o2}",
 "st": "vmovaps %%zmm30,{o}+8192(%0)",
 "dpy": "vpdpbusd %%ymm30,%%ymm31,%%ymm{d}",
 "mubs": "vpmaddubsw %%zmm30,%%zmm31,%%zmm{o2}",
 "mwd": "vpmaddwd %%zmm30,%%zmm31,%%zmm{o2}",
 "addd": "vpaddd %%zmm30,%%zmm31,%%zmm{o2}",
 "cvtph": "vcvtph2ps %%ymm30,%%zmm{o2}",
}
def make(name, mix, reps=4):
    seq=[]
    # interleave kinds round-robin
    counts = {k:c*reps for k,c in mix}
    while any(counts.values()):
        for k,_ in mix:
            if counts[k]>0: seq.append(k); counts[k]-=1
    di=oi=fi=si=0; lines=[]
    for k in seq:
        lines.append('"'+K[k].format(d=di%12, o=(oi%64)*64, o2=12+oi%12, f=24+fi%4, s=8+si%4)+'\\n\\t"')
        if k in("dp","dpm","dpy"): di+=1
        if k=="fma": fi+=1
        if k=="sc": si+=1
        oi+=1
    n=len(seq)
    clob=",".join('"xmm%d"'%i for i in range(30))+',"r8","r9","r10","r11"'
    return f'''  {{ long it=5000000; double b=1e9; for(int r=0;r<3;++r){{auto t0=std::chrono::steady_clock::now(); for(long i=0;i<it;++i) asm volatile({" ".join(lines)}::"r"(buf):"memory",{clob}); double s=std::chrono::duration<double>(std::chrono::steady_clock::now()-t0).count(); if(s<b)b=s;}} double cyc=b/it*4.07e9; printf("%-40s %6.2f cyc/iter (%d instr, %d dp) IPC %.2f, dp/cyc %.2f\\n", "{name}", cyc, {n}, {sum(c for k,c in mix if k in ("dp","dpm","dpy"))*reps}, {n}/cyc, {sum(c for k,c in mix if k in ("dp","dpm","dpy"))*reps}/cyc); }}
'''
mixes = [l.split(":") for l in sys.argv[1:]]
src = '#include <cstdio>\n#include <chrono>\nalignas(64) static char buf[1<<16];\nint main(){\n'
for name, spec in mixes:
    mix=[(p.split("=")[0], int(p.split("=")[1])) for p in spec.split(",")]
    src += make(name, mix)
src += '}\n'
open("mix.cpp","w").write(src)
