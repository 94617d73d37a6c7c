using SharpPcap;

namespace LbAllocator.Speaker.Tests;

/// <summary>What the announcer says when a capture cannot open: /readyz, the Node event and the lease carry it.</summary>
public class AnnouncerTests
{
    [Theory]
    [InlineData(PcapError.PermissionDenied)]
    [InlineData(PcapError.PromiscuousPermissionDenied)]
    public void A_refused_capture_names_the_capability_it_takes(PcapError error) =>
        Assert.Equal(
            "cannot capture: Unable to activate the adapter (eth0). (the speaker needs the NET_RAW capability)",
            LbAllocator.Speaker.Capture.Captures.CannotCapture("Unable to activate the adapter (eth0).", error));

    [Fact]
    public void Other_failures_are_told_as_they_are() =>
        Assert.Equal("cannot capture: interface eth0 not found", LbAllocator.Speaker.Capture.Captures.CannotCapture("interface eth0 not found", null));
}
