using LbAllocator.Core;

namespace LbAllocator.Core.Tests;

public class IpRangeTests
{
    [Theory]
    [InlineData("192.0.2.0/24", "192.0.2.0", "192.0.2.255", "256")]
    [InlineData("192.0.2.10 - 192.0.2.20", "192.0.2.10", "192.0.2.20", "11")]
    [InlineData("203.0.113.7", "203.0.113.7", "203.0.113.7", "1")]
    [InlineData("2001:db8::/64", "2001:db8::", "2001:db8::ffff:ffff:ffff:ffff", "18446744073709551616")]
    public void Parses_cidr_range_and_single_address(string text, string first, string last, string count)
    {
        var range = IpRange.Parse(text);
        Assert.Equal(first, range.First.ToString());
        Assert.Equal(last, range.Last.ToString());
        Assert.Equal(UInt128.Parse(count), range.Count);
    }
}
